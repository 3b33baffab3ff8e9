"""Admin of the consent app, split by topic; importing the modules registers them."""

from . import admin_ledger, admin_requests  # noqa: F401
