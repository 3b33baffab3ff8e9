"""What every platform client shares: one httpx client per sync, retries only where a repeat
may succeed (429, 5xx, timeouts and broken connections) with backoff that honours Retry-After,
and a 4xx turned into :class:`PlatformError` carrying the platform's own message.

A request that creates something (an upload) is not repeated blindly after a timeout: the
reply may have been lost after the platform did the work. It raises :class:`OutcomeUnknown`
instead, and the caller looks the object up by its deterministic name before trying again
(``audiences.sync.find_or_create``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from django.conf import settings
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class PlatformError(Exception):
    """The platform refused the request (4xx): the run ends and shows this message."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", body: Any = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body = body


class PlatformUnavailable(PlatformError):
    """429/5xx/timeouts still failing after every attempt: try again on a later run."""


class OutcomeUnknown(PlatformError):
    """A creating request timed out: the platform may or may not have done it."""


ErrorParser = Callable[[httpx.Response], tuple[str, str]]


class PlatformHttp:
    """A thin wrapper of ``httpx.Client``: retries, backoff, request ids, error messages."""

    def __init__(
        self,
        base_url: str,
        *,
        error_parser: ErrorParser,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        max_backoff: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.endswith("/"):
            base_url += "/"
        self.timeout = timeout if timeout is not None else settings.AD_PLATFORM_TIMEOUT
        self.max_attempts = max_attempts or settings.AD_PLATFORM_MAX_ATTEMPTS
        self.max_backoff = (
            max_backoff if max_backoff is not None else settings.AD_PLATFORM_MAX_BACKOFF
        )
        self.client = httpx.Client(
            base_url=base_url, headers=headers or {}, timeout=self.timeout, follow_redirects=False
        )
        self.error_parser = error_parser
        self.request_ids: list[str] = []
        self.calls = 0
        self._sleep = sleep

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PlatformHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pause(self, attempt: int, response: httpx.Response | None) -> None:
        delay = min(self.max_backoff, 0.5 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                delay = min(self.max_backoff, max(delay, float(retry_after)))
        self._sleep(delay)

    def request(
        self,
        method: str,
        path: str,
        *,
        creates: bool = False,
        before_attempt: Callable[[], dict[str, Any]] | None = None,
        auth: Callable[[], dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response or raise a PlatformError.

        ``before_attempt`` gives fresh keyword arguments per attempt (a file to upload must be
        reopened each time); ``auth`` gives headers per attempt (a refreshed token).
        """
        last = ""
        for attempt in range(self.max_attempts):
            call_kwargs = dict(kwargs)
            if before_attempt is not None:
                call_kwargs.update(before_attempt())
            if auth is not None:
                call_kwargs["headers"] = {**call_kwargs.get("headers", {}), **auth()}
            response = None
            self.calls += 1
            try:
                response = self.client.request(method, path, **call_kwargs)
            except httpx.TimeoutException as exc:
                if creates:
                    raise OutcomeUnknown(
                        _("нет ответа за %(seconds)s с: %(request)s")
                        % {"seconds": f"{self.timeout:g}", "request": f"{method} {path}"}
                    ) from exc
                last = _("нет ответа за %(seconds)s с") % {"seconds": f"{self.timeout:g}"}
            except httpx.TransportError as exc:
                last = _("соединение не удалось: %(error)s") % {"error": exc}
            finally:
                # Files opened by before_attempt are closed after each attempt.
                for value in (call_kwargs.get("files") or {}).values():
                    handle = value[1] if isinstance(value, tuple) else None
                    if hasattr(handle, "close"):
                        handle.close()
            if response is not None:
                request_id = response.headers.get("X-Request-Id") or response.headers.get(
                    "X-Request-ID"
                )
                if request_id:
                    self.request_ids.append(request_id)
                if response.status_code < 400:
                    return response
                code, message = self.error_parser(response)
                if response.status_code not in RETRY_STATUSES:
                    raise PlatformError(
                        message,
                        status=response.status_code,
                        code=code,
                        body=_json_or_text(response),
                    )
                last = f"HTTP {response.status_code} {code}: {message}"
            logger.info(
                "%s %s: %s (attempt %s of %s)", method, path, last, attempt + 1, self.max_attempts
            )
            if attempt + 1 < self.max_attempts:
                self._pause(attempt, response)
        raise PlatformUnavailable(
            _("платформа не ответила успешно за %(attempts)s попыток: %(last)s")
            % {"attempts": self.max_attempts, "last": last}
        )


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


MAX_MESSAGE_CHARS = 500


def unparsed_error(response: httpx.Response) -> tuple[str, str]:
    """The error of a reply whose body is not the platform's error format (an HTML page of a
    proxy, plain text, JSON of another shape): ``HTTP <status>`` only. The body itself is never
    shown to a client (sync messages, the portal, the API); it is logged at debug level."""
    logger.debug("unparsed error body of HTTP %s: %r", response.status_code, response.text[:2000])
    return "http_error", f"HTTP {response.status_code}"


def error_text(value: Any) -> str:
    """A message the platform's error format carries, as text of reasonable length; anything
    that is not text is no message (``""``)."""
    if not isinstance(value, str):
        return ""
    return value.strip()[:MAX_MESSAGE_CHARS]


def base_url_setting(name: str, default: str) -> str:
    """A provider's base URL: deployment configuration (``<PROVIDER>_BASE_URL``), never tenant
    data, so no client can point a worker at an address of its choosing."""
    return getattr(settings, name, "") or default
