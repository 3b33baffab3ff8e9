"""UniSender (https://api.unisender.com/ru/api/): transactional email."""

from .client import DEFAULT_BASE_URL, UniSenderClient, base_url, unisender_error

__all__ = ["DEFAULT_BASE_URL", "UniSenderClient", "base_url", "unisender_error"]
