"""Yandex Audiences (https://api-audience.yandex.ru/v1/management/)."""

from .client import (
    DEFAULT_BASE_URL,
    FEW_DATA,
    MIN_ROWS,
    PROCESSED,
    YandexAudiencesClient,
    base_url,
    yandex_error,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "FEW_DATA",
    "MIN_ROWS",
    "PROCESSED",
    "YandexAudiencesClient",
    "base_url",
    "yandex_error",
]
