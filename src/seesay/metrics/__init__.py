"""Metrics: evidence retrieval (AUROC, AUPRC, NDCG) over image patches."""

from .retrieval import auprc, auroc, ndcg

__all__ = ["auprc", "auroc", "ndcg"]
