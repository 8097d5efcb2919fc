"""Decoding methods on the seesay engine, by name."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import METHODS, BaseMethod, Method, register_method
from .deco import DeCo, DeCoConfig
from .dola import DoLa, DoLaConfig  # each module registers its method on import
from .dualpd import DualPD, DualPDConfig
from .icd import ICD, ICDConfig
from .m3id import M3ID, M3IDConfig
from .pai import PAI, PAIConfig
from .var import VAR, VARConfig
from .vcd import VCD, VCDConfig
from .vea import VEA, VEAConfig
from .vicrop import ViCrop, ViCropConfig


def get_method(name: str, **overrides: Any) -> Method:
    """The method called ``name`` with its config fields overridden by ``overrides``."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name].from_overrides(**overrides)


__all__ = [
    "ICD",
    "M3ID",
    "METHODS",
    "PAI",
    "VAR",
    "VCD",
    "VEA",
    "BaseMethod",
    "DeCo",
    "DeCoConfig",
    "DoLa",
    "DoLaConfig",
    "DualPD",
    "DualPDConfig",
    "ICDConfig",
    "M3IDConfig",
    "Method",
    "PAIConfig",
    "VARConfig",
    "VCDConfig",
    "VEAConfig",
    "ViCrop",
    "ViCropConfig",
    "get_method",
    "register_method",
]
