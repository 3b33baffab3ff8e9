"""SMSC.ru (https://smsc.ru/sys/): SMS."""

from .client import DEFAULT_BASE_URL, SmscClient, base_url, smsc_error

__all__ = ["DEFAULT_BASE_URL", "SmscClient", "base_url", "smsc_error"]
