"""Errors seesay raises for bad input: each names its cause in one line."""

from __future__ import annotations


class SeesayError(Exception):
    """Base class: a user-facing problem with a one-line, actionable message."""


class ModelLoadError(SeesayError):
    """The model path or id cannot be loaded (missing path, no config, remote code refused)."""


class UnsupportedModelError(SeesayError):
    """The model's architecture is not one of the supported vision-language families."""


class ImageError(SeesayError):
    """An image is missing, unreadable or not decodable."""


class NoImageTokensError(SeesayError):
    """A prompt has no image tokens after processing, so no attention over the image can be read."""


class DataError(SeesayError):
    """A data file (annotations, records) is missing or malformed; the message names file and record."""


class ConfigError(SeesayError):
    """A method or engine configuration value is invalid."""
