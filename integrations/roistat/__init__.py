"""Roistat (https://cloud.roistat.com/api/v1/)."""

from .client import (
    DEFAULT_BASE_URL,
    METRICS,
    RoistatClient,
    RoistatRow,
    base_url,
    roistat_error,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "METRICS",
    "RoistatClient",
    "RoistatRow",
    "base_url",
    "roistat_error",
]
