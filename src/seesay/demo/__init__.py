"""The demo layer: seesay's synthetic shapes benchmark (:mod:`.synthetic`, :mod:`.synthetic_pope`), the
bundled organism (``model/``: a tiny LLaVA trained on it by ``scripts/train_demo_model.py``) and
``seesay demo`` (:mod:`.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEMO_MODEL = Path(__file__).resolve().parent / "model"


def demo_model_path() -> Path | None:
    """The bundled trained model, if this installation has it."""
    return DEMO_MODEL if (DEMO_MODEL / "config.json").exists() else None


def __getattr__(name: str) -> Any:  # the demo's run on first use (it imports torch and transformers)
    if name in ("run_demo", "DemoReport", "HELDOUT_SEED", "DEV_SEED"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
