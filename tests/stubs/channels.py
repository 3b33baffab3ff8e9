"""What the owned-channel stubs (email, SMS and push providers) share on top of base.py: a
record of every message the provider accepted, so that tests and the demo can list them and
prove none was delivered twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.stubs.base import StubServer


class MessagingStub(StubServer):
    """A provider stub that records accepted messages in ``sent`` (dicts with at least ``to``
    and ``text``, plus the provider's id and fields)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sent: list[dict[str, Any]] = []
        self._next_id = 1

    def _accept(self, **entry: Any) -> str:
        """Record one accepted message and return its provider id."""
        with self._lock:
            provider_id = str(self._next_id)
            self._next_id += 1
            self.sent.append({"id": provider_id, **entry})
            return provider_id

    def sent_to(self, address: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self.sent if entry["to"] == address]

    def deliveries(self, field: str = "to") -> Counter:
        """How many times each value of ``field`` was accepted (a count above 1 for a unique
        address or text is a message delivered twice)."""
        with self._lock:
            return Counter(entry[field] for entry in self.sent)

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()
            self.requests.clear()
