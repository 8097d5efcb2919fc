"""Evidence-retrieval metrics over image patches: scores s_i against binary box labels y_i.

    AUROC = P(s_pos > s_neg) + 1/2 P(s_pos = s_neg)          (Mann-Whitney U / (n_pos n_neg), ties halved)
    AUPRC = average precision = sum_t (R_t - R_{t-1}) P_t     (t: the distinct scores, descending)
    NDCG  = DCG / IDCG,  DCG = sum_k g_(k) / log2(k + 1)      (over the whole ranking)

Each returns NaN for a degenerate sample, one whose tokens are all evidence or all non-evidence: AUROC is
undefined there, and AUPRC/NDCG are then NaN too (not a trivial 1.0 for an all-evidence sample), as VEA's
reference ``score_attribution`` (ZhiningLiu1998/VEA c03e995c3c8d444a6e0835a0fdb023f6cbffd4c1,
``vea/metrics.py``: ``if labels.min() == labels.max(): nan``) treats it. Callers average with ``nanmean``.
Ties (attention rows tie often: bf16, zeros) are treated as scikit-learn does, which VEA's reference calls:
AUPRC takes each distinct score as one threshold (``average_precision_score``: a tied group enters the
precision-recall curve at once); NDCG gives every position of a tied group the group's mean gain
(``ndcg_score`` with ``ignore_ties=False``, sklearn's ``_tie_averaged_dcg``); AUROC counts a tie one half.
Without ties all three are the usual rank formulas.
"""

from __future__ import annotations

import numpy as np


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.shape} vs {y.shape}")
    return s, y


def auroc(scores, labels) -> float:
    """Area under the ROC curve (ties count one half)."""
    s, y = _arrays(scores, labels)
    return float(auroc_rows(s[None], y)[0])


def auroc_rows(scores, labels) -> np.ndarray:
    """:func:`auroc` of every row of ``scores`` [..., n] against one label vector [n], in one ranking:

        AUROC_r = (sum_{i: y_i} rank_r(i) - n_pos (n_pos + 1) / 2) / (n_pos n_neg)

    with average ranks for ties (Mann-Whitney U). Returns [...] (all NaN for a degenerate label vector)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels).ravel().astype(bool)
    if s.ndim == 0 or s.shape[-1] != y.size:
        raise ValueError(f"scores and labels differ in size: {s.shape} vs {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(s.shape[:-1], np.nan)
    from scipy.stats import rankdata

    ranks = rankdata(s, axis=-1)  # average ranks for ties
    return (ranks[..., y].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _groups(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by descending score and the end (exclusive) of each group of equal scores in that order."""
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    ends = np.flatnonzero(np.diff(sorted_s)) + 1
    return order, np.append(ends, len(s))


def auprc(scores, labels) -> float:
    """Average precision, a tied group of scores as one threshold (NaN for a degenerate sample)."""
    s, y = _arrays(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    order, ends = _groups(s)
    tps = np.cumsum(y[order])[ends - 1]
    precision = tps / ends
    recall = tps / n_pos
    return float((np.diff(recall, prepend=0.0) * precision).sum())


def ndcg(scores, labels) -> float:
    """NDCG, each tied group's positions sharing its mean gain (NaN for a degenerate sample)."""
    s, y = _arrays(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    discounts = 1.0 / np.log2(np.arange(2, len(s) + 2))
    order, ends = _groups(s)
    gains = y[order].astype(float)
    starts = np.concatenate([[0], ends[:-1]])
    dcg = sum(gains[a:b].mean() * discounts[a:b].sum() for a, b in zip(starts, ends, strict=True))
    idcg = float(discounts[:n_pos].sum())
    return float(dcg) / idcg
