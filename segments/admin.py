"""Admin of the segments app, split by topic; importing the modules registers them."""

from . import admin_scoring, admin_segments  # noqa: F401
