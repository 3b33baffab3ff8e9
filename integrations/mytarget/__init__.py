"""myTarget (https://target.my.com/api/): the same remarketing API as VK Ads, another host."""

from ..http import base_url_setting
from ..vk_ads.client import VkAdsClient, obtain_token, vk_error

DEFAULT_BASE_URL = "https://target.my.com/api/"

__all__ = ["DEFAULT_BASE_URL", "VkAdsClient", "base_url", "obtain_token", "vk_error"]


def base_url() -> str:
    """``MYTARGET_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("MYTARGET_BASE_URL", DEFAULT_BASE_URL)
