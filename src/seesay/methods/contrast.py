"""Small pure functions shared by the contrastive methods (DualPD, DoLa, VCD).

Distances between distributions p, q over the last axis (rows sum to 1; zeros allowed):

    hellinger(p, q) = (1/sqrt 2) * || sqrt(p) - sqrt(q) ||_2                    in [0, 1]
    kl(p, q)        = sum p log(p / q)          (eps-smoothed so zeros stay finite)
    js(p, q)        = 1/2 kl(p, m) + 1/2 kl(q, m),  m = (p + q) / 2              in [0, log 2]

Plausibility (DoLa's "relative top"): V_head = {v : p(v) >= alpha * max_w p(w)}, i.e.
log p(v) >= log alpha + max log p.

Contrast with a distorted branch (VCD, ICD), logits z of the input and z' of its distortion:

    scores = (1 + alpha) z - alpha z'    on {v : z_v >= log beta + max z}; -inf elsewhere
"""

from __future__ import annotations

import math
from typing import Literal

import torch

ShiftMetric = Literal["hellinger", "js", "kl"]
EPS = 1e-12


def hellinger(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hellinger distance over the last axis."""
    return (p.clamp_min(0).sqrt() - q.clamp_min(0).sqrt()).norm(dim=-1) / math.sqrt(2.0)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """KL(p || q) over the last axis; terms with p = 0 contribute 0, q is floored at eps."""
    return torch.where(p > 0, p * (torch.log(p.clamp_min(eps)) - torch.log(q.clamp_min(eps))), 0.0).sum(-1)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence over the last axis (natural log)."""
    m = 0.5 * (p + q)
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


SHIFT_METRICS = {"hellinger": hellinger, "js": js_divergence, "kl": kl_divergence}


def adjacent_shift(dist: torch.Tensor, metric: ShiftMetric = "hellinger") -> torch.Tensor:
    """S(l) = d(a^(l), a^(l-1)) for l = 1 .. L-1 from dist [..., L, N] -> [..., L-1] (entry l-1 is S(l))."""
    return SHIFT_METRICS[metric](dist[..., 1:, :], dist[..., :-1, :])


def plausible_mask(logprobs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Bool mask of tokens with p >= alpha * max p, from log-probabilities [..., V]."""
    return logprobs >= logprobs.max(dim=-1, keepdim=True).values + math.log(alpha)


def relative_top_filter(
    scores: torch.Tensor, final_logprobs: torch.Tensor, alpha: float, fill: float = float("-inf")
) -> torch.Tensor:
    """Keep ``scores`` on the plausible set of ``final_logprobs``; the rest get ``fill``."""
    return scores.masked_fill(~plausible_mask(final_logprobs, alpha), fill)


def contrastive_scores(
    logits: torch.Tensor, distorted: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """(1 + alpha) z - alpha z' on the plausible set of z (cutoff ``beta`` on the probabilities)."""
    cutoff = math.log(beta) + logits.max(dim=-1, keepdim=True).values
    return ((1 + alpha) * logits - alpha * distorted).masked_fill(logits < cutoff, float("-inf"))
