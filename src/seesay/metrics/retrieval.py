"""Evidence-retrieval metrics over image patches: scores s_i against binary box labels y_i.

    AUROC = P(s_pos > s_neg) + 1/2 P(s_pos = s_neg)          (Mann-Whitney U / (n_pos n_neg), ties halved)
    AUPRC = average precision = sum_k P@k * y_(k) / n_pos     (descending score; ties in stable order)
    NDCG  = DCG / IDCG,  DCG = sum_k y_(k) / log2(k + 1)      (over the whole ranking)

Each returns NaN for a degenerate sample, one whose tokens are all evidence or all non-evidence: AUROC is
undefined there, and AUPRC/NDCG are then NaN too (not a trivial 1.0 for an all-evidence sample), as VEA's
reference ``score_attribution`` (ZhiningLiu1998/VEA c03e995c3c8d444a6e0835a0fdb023f6cbffd4c1,
``vea/metrics.py``: ``if labels.min() == labels.max(): nan``) treats it. Callers average with ``nanmean``.
Ties: AUROC counts them one half; AUPRC and NDCG rank tied scores in index order (VEA's sklearn
``average_precision_score`` / ``ndcg_score`` treat a tie as one threshold / average it instead).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.shape} vs {y.shape}")
    return s, y


def auroc(scores, labels) -> float:
    """Area under the ROC curve (ties count one half)."""
    s, y = _arrays(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores, labels) -> float:
    """Average precision of the ranking by descending score (NaN for a degenerate sample)."""
    s, y = _arrays(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = y[order]
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_k * hits).sum() / n_pos)


def ndcg(scores, labels) -> float:
    """NDCG of the ranking by descending score (binary relevance; NaN for a degenerate sample)."""
    s, y = _arrays(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    discounts = 1.0 / np.log2(np.arange(2, len(s) + 2))
    order = np.argsort(-s, kind="stable")
    dcg = float((y[order] * discounts).sum())
    idcg = float(discounts[:n_pos].sum())
    return dcg / idcg
