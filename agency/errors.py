"""The one base of errors that a service raises when a rule refuses something.

Every entry point shows it the same way: the API's exception handler
(``agency.api.json_exception_handler``) answers ``{"code", "message", ...extra}`` with
``status``; admin and portal views show ``message`` as a message; commands print it. Apps
subclass it (``SegmentError``, ``AudienceError``, ``ConsentError``, ``TierLimitError``) and set
``status`` where 400 is wrong; they never convert it to an API error by hand.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refused operation: a stable machine-readable ``code``, a human ``message`` (Russian by
    default), the HTTP ``status`` it maps to, an optional ``field`` at fault and ``extra`` keys
    for the JSON body."""

    status: int = 400
    default_code: str = "invalid"

    def __init__(
        self,
        code: str | None = None,
        message: str = "",
        *,
        field: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.field = field
        self.extra = extra or {}
        if status is not None:
            self.status = status

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of this error."""
        body: dict[str, Any] = {"code": self.code, "message": str(self.message)}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body


class NotFoundError(ServiceError):
    status = 404
    default_code = "not_found"


class ConflictError(ServiceError):
    status = 409
    default_code = "conflict"


class ForbiddenError(ServiceError):
    status = 403
    default_code = "forbidden"
