"""Calltouch (https://api.calltouch.ru/)."""

from .client import DEFAULT_BASE_URL, Call, CalltouchClient, base_url, calltouch_error

__all__ = ["DEFAULT_BASE_URL", "Call", "CalltouchClient", "base_url", "calltouch_error"]
