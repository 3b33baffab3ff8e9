"""Yandex Metrica management API (https://api-metrika.yandex.net/management/v1/)."""

from .client import (
    CLIENT_ID,
    DEFAULT_BASE_URL,
    FINAL_STATUSES,
    USER_ID,
    OfflineConversion,
    YandexMetricaClient,
    base_url,
    conversions_csv,
)

__all__ = [
    "CLIENT_ID",
    "DEFAULT_BASE_URL",
    "FINAL_STATUSES",
    "USER_ID",
    "OfflineConversion",
    "YandexMetricaClient",
    "base_url",
    "conversions_csv",
]
