"""RuStore push (https://vkpns.rustore.ru/v1/)."""

from .client import DEFAULT_BASE_URL, RuStorePushClient, base_url, rustore_error

__all__ = ["DEFAULT_BASE_URL", "RuStorePushClient", "base_url", "rustore_error"]
