"""Metrics: evidence retrieval (AUROC, AUPRC, NDCG) over image patches."""

from .retrieval import auprc, auroc, auroc_rows, ndcg

__all__ = ["auprc", "auroc", "auroc_rows", "ndcg"]
