"""Template context shared by every page (portal, admin, consent pages)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def brand(request: HttpRequest) -> dict[str, Any]:
    """``brand_name``: the product's one name (``settings.BRAND_NAME``), translated."""
    return {"brand_name": settings.BRAND_NAME}
