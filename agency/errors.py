"""The one base of errors that a service raises when a rule refuses something.

Every entry point shows it the same way: the API's exception handler
(``agency.api.json_exception_handler``) answers ``{"code", "message", ...extra}`` with
``status``; admin and portal views show ``message`` as a message; commands print it. Apps
subclass it (``SegmentError``, ``AudienceError``, ``ConsentError``, ``TierLimitError``) and set
``status`` where 400 is wrong; they never convert it to an API error by hand.

:func:`error_for_exception` is the one mapping of any other exception an API route meets: a
database outage is 503 with Retry-After, the rest 500 without internals. The DRF handler and
``agency.middleware.ApiErrorMiddleware`` (for what no DRF view catches) both use it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest
from django.utils.translation import gettext, gettext_lazy

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refused operation: a stable machine-readable ``code``, a human ``message`` (in the
    active language: the request's, Russian by default; services build it with ``gettext`` and
    named placeholders), the HTTP ``status`` it maps to, an optional ``field`` at fault and
    ``extra`` keys for the JSON body."""

    status: int = 400
    default_code: str = "invalid"
    retry_after: int | None = None  # seconds; the API sends it as the Retry-After header

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


class ServerError(ServiceError):
    """Something the code did not expect: the API answers it without the traceback."""

    status = 500
    default_code = "server_error"


class DatabaseUnavailable(ServiceError):
    """The database cannot be reached (down, restarting, failing over): worth a retry."""

    status = 503
    default_code = "database_unavailable"
    retry_after = 30


DATABASE_OUTAGE = (OperationalError, InterfaceError)
SERVER_ERROR_MESSAGE = gettext_lazy("Внутренняя ошибка сервера; повторите запрос позже.")


def error_for_exception(exc: BaseException, *, request: HttpRequest | None) -> ServiceError:
    """The error an API route answers for ``exc``: a service error as it is; a database outage
    503 with a retry hint; anything else 500 with a message that reveals nothing.

    Give ``request`` unless Django already reported the failure (its handler500 path): the
    last two are then logged with their traceback and announced by ``got_request_exception``,
    as Django does for its own 500s (error reporters and the test client listen to it). Call
    it while ``exc`` is being handled."""
    if isinstance(exc, ServiceError):
        return exc
    outage = isinstance(exc, DATABASE_OUTAGE)
    if request is not None:
        what = "database unavailable" if outage else "unexpected error"
        logger.exception("API %s %s: %s", request.method, request.path, what, exc_info=exc)
        got_request_exception.send(sender=None, request=request)
    if outage:
        return DatabaseUnavailable(
            message=gettext("База данных временно недоступна; повторите запрос через %(s)s с.")
            % {"s": DatabaseUnavailable.retry_after}
        )
    return ServerError(message=SERVER_ERROR_MESSAGE)
