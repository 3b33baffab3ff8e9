"""VK Ads (https://ads.vk.com/api/); myTarget speaks the same API (integrations.mytarget)."""

from .client import (
    DEFAULT_BASE_URL,
    LIST_TYPES,
    MIN_DIFF_LINES,
    MIN_LIST_LINES,
    TokenProvider,
    VkAdsClient,
    base_url,
    obtain_token,
    vk_error,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "LIST_TYPES",
    "MIN_DIFF_LINES",
    "MIN_LIST_LINES",
    "TokenProvider",
    "VkAdsClient",
    "base_url",
    "obtain_token",
    "vk_error",
]
