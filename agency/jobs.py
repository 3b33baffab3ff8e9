"""The one shape of a background job (CSV import, scoring run, audience sync): a row claimed by
flipping pending → running, with progress and a stage the admin and portal show live."""

from __future__ import annotations

PENDING = "pending"
RUNNING = "running"
ACTIVE_STATES = (PENDING, RUNNING)


class JobStateMixin:
    """``is_active`` for every job model; its ``status`` field holds the state."""

    status: str

    @property
    def is_active(self) -> bool:
        """Queued or running: pages refresh themselves while one is."""
        return self.status in ACTIVE_STATES
