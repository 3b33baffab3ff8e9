"""Sendsay (https://api.sendsay.ru/general/api/v100/json/): email by ``issue.send``."""

from .client import DEFAULT_BASE_URL, SendsayClient, base_url, sendsay_error

__all__ = ["DEFAULT_BASE_URL", "SendsayClient", "base_url", "sendsay_error"]
