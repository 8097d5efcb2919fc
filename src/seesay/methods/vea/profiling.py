"""VEA layer profiling: which layers' attention finds the evidence region.

For each record (image, question, evidence boxes): one attribution pass of the QA prompt; each image token
is labelled 1 if its pixel box overlaps any evidence box ("any" rule); per layer l,
AUROC(labels, a^(l)) (and AUPRC, NDCG) per sample, nan-mean over samples (samples whose labels are all
equal are skipped). L_VG = the top ceil(10% L) layers by AUROC. RAPT per layer is averaged alongside for
the segments image, question, evidence and non-evidence.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...engine.loading import LoadedModel, build_inputs
from ...errors import DataError
from .attribution import attention_rows, question_mask, rapt
from .evidence import box_labels
from .prompts import qa_prompt
from .retrieval import auprc, auroc_rows, ndcg

if TYPE_CHECKING:  # a type only: the loader belongs to the evaluation layer
    from ...eval.data.visual_cot import EvidenceRecord

SEGMENTS = ("image", "question", "evidence", "non_evidence")


@dataclass
class LayerProfile:
    """Per-layer evidence-retrieval scores of one model and the layers chosen as L_VG."""

    model: str
    num_layers: int
    layers: tuple[int, ...]
    auroc: list[float]
    auprc: list[float]
    ndcg: list[float]
    rapt: dict[str, list[float]] = field(default_factory=dict)
    n_samples: int = 0
    n_skipped: int = 0
    top_fraction: float = 0.1

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["layers"] = list(self.layers)
        Path(path).write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LayerProfile:
        try:
            data = json.loads(Path(path).read_text())
            data["layers"] = tuple(int(v) for v in data["layers"])
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"cannot read layer profile {path}: {err}") from err


def choose_layers(scores: Sequence[float], fraction: float = 0.1) -> tuple[int, ...]:
    """The top ceil(fraction * L) layers by score (NaN last), in layer order."""
    arr = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    k = max(1, math.ceil(fraction * len(arr)))
    return tuple(sorted(int(i) for i in np.argsort(-arr, kind="stable")[:k]))


def profile_layers(
    loaded: LoadedModel,
    records: Sequence[EvidenceRecord],
    *,
    n: int | None = 100,
    batch_size: int = 4,
    top_fraction: float = 0.1,
    rule: str = "any",
    progress: Callable[[int], None] | None = None,
) -> LayerProfile:
    """Profile ``loaded`` on up to ``n`` records; see the module docstring."""

    records = list(records)[:n] if n else list(records)
    num_layers = loaded.adapter.num_layers
    layers = list(range(num_layers))
    per_sample: dict[str, list[list[float]]] = {"auroc": [], "auprc": [], "ndcg": []}
    rapts: dict[str, list[list[float]]] = {s: [] for s in SEGMENTS}
    skipped = 0
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        batch = build_inputs(loaded, [r.image for r in chunk], [qa_prompt(r.question) for r in chunk])
        rows = attention_rows(loaded, batch, layers)  # [B, L, T]
        layouts = loaded.adapter.image_layouts(batch.inputs, batch.original_sizes)
        for b, record in enumerate(chunk):
            layout = layouts[b][0]
            labels = box_labels(layout, record.boxes, rule)
            if labels.all() or not labels.any():
                skipped += 1
                continue
            img_rows = rows[b][:, layout.positions]  # [L, n_image_tokens]
            per_sample["auroc"].append(auroc_rows(img_rows, labels).tolist())
            per_sample["auprc"].append([auprc(r, labels) for r in img_rows])
            per_sample["ndcg"].append([ndcg(r, labels) for r in img_rows])
            t = rows.shape[-1]
            prompt = batch.inputs["attention_mask"][b].bool().cpu().numpy()[:t]
            image = np.zeros(t, dtype=bool)
            image[layout.positions] = True
            evidence = np.zeros(t, dtype=bool)
            evidence[layout.positions[labels]] = True
            segments = {
                "image": image,
                "question": question_mask(loaded, batch.inputs["input_ids"][b], record.question),
                "evidence": evidence,
                "non_evidence": image & ~evidence,
            }
            for s in SEGMENTS:
                rapts[s].append([rapt(rows[b][li], {s: segments[s]}, prompt)[s] for li in range(num_layers)])
        if progress is not None:
            progress(len(chunk))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nan-mean of empty columns
        mean = {
            k: (np.nanmean(np.asarray(v), axis=0) if v else np.full(num_layers, np.nan)).tolist()
            for k, v in per_sample.items()
        }
        rapt_mean = {
            k: (np.nanmean(np.asarray(v), axis=0) if v else np.full(num_layers, np.nan)).tolist()
            for k, v in rapts.items()
        }
    if not per_sample["auroc"]:
        raise DataError("no record had both evidence and non-evidence image tokens: nothing to profile")
    return LayerProfile(
        model=loaded.name,
        num_layers=num_layers,
        layers=choose_layers(mean["auroc"], top_fraction),
        auroc=mean["auroc"],
        auprc=mean["auprc"],
        ndcg=mean["ndcg"],
        rapt=rapt_mean,
        n_samples=len(per_sample["auroc"]),
        n_skipped=skipped,
        top_fraction=top_fraction,
    )
