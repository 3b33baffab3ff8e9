"""What both platform stubs share: a threaded werkzeug server on the loopback interface, a
request log, lazily advancing background processing, fault injection and a create/modify quota.

Each platform subclass supplies its routes (`handle`) and its error body format
(`error_body`); everything here is platform-neutral.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Self

from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

FAULT_KINDS = ("429", "503", "timeout")


class StubRequest(Request):
    """Request limits fit for uploads of up to ~1.2 GB: file parts are streamed by werkzeug to
    temporary files (parts over 500 KB go to disk), never held in memory."""

    max_content_length = 1_300_000_000
    max_form_memory_size = 1_000_000
    max_form_parts = 100


class StubReply(Exception):  # noqa: N818 - it is a reply, not an error of the stub
    """Raised by a handler to answer at once (usually with a platform error body)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug logs every request to stderr; the stubs keep their own log instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON reply; `body=None` with status 204 gives an empty one."""
    if body is None:
        response = Response(status=status)
    else:
        response = Response(
            json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
        )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def read_json(request: Request) -> Any:
    """The JSON body, or None when it is absent or not JSON (handlers answer 400 then)."""
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


class StubServer:
    """Base of the platform stubs: start()/stop() (or `with`), `.base_url`, `.requests`.

    Subclasses set `prefix` (the API's path prefix, e.g. "/api/") and implement `handle`,
    `error_body` and optionally `decorate`. State shared with request threads is guarded by
    `self._lock` (re-entrant, so inspection methods may call each other).
    """

    prefix = "/"

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        processing_delay: float = 0.0,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        timeout_sleep: float = 3.0,
        timeout_processes: float = 0.5,
        quota_per_minute: int | None = None,
        log_requests: bool = False,
    ) -> None:
        kinds = tuple(fault_kinds)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault_kinds must be a non-empty subset of {FAULT_KINDS}")
        self.host = host
        self.port = port
        self.processing_delay = processing_delay
        # Mutable at run time (e.g. take a token first, then turn faults on).
        self.fault_rate = fault_rate
        self.fault_kinds = kinds
        self.timeout_sleep = timeout_sleep
        # Share of POST timeout faults that do the work first and lose the reply.
        self.timeout_processes = timeout_processes
        self.quota_per_minute = quota_per_minute
        self.log_requests = log_requests
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._rng = random.Random(fault_seed)
        self._quota_calls: deque[float] = deque()
        # key -> (due monotonic time, completion callback run under the lock)
        self._pending: dict[Any, tuple[float, Callable[[], None]]] = {}
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind (port 0 picks a free one) and serve in a daemon thread."""
        self._stopping.clear()
        self._server = make_server(
            self.host, self.port, self, threaded=True, request_handler=_QuietRequestHandler
        )
        self.port = self._server.server_port
        server = self._server
        self._thread = threading.Thread(
            # A short poll interval so that stop() returns quickly.
            target=lambda: server.serve_forever(poll_interval=0.05),
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests sleeping in a timeout fault are woken up."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the client joins relative API paths to (ends with '/')."""
        return self.root_url + self.prefix

    # --- hooks for subclasses --------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Route and answer one request; raise StubReply for errors."""
        raise NotImplementedError

    def error_body(self, status: int, code: str, message: str) -> Any:
        """The platform's error body for a status and an error code/kind."""
        raise NotImplementedError

    def code_for_status(self, status: int) -> str:
        """The platform's generic error code for an HTTP status (faults, quota, 404, 413)."""
        raise NotImplementedError

    def decorate(self, request: Request, response: Response) -> None:
        """Add headers every reply carries (VK's rate-limit headers)."""

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> StubReply:
        return StubReply(status, self.error_body(status, code, message), headers)

    # --- processing ------------------------------------------------------------------------

    def _schedule(self, key: Any, complete: Callable[[], None]) -> None:
        """Run `complete` (under the lock) once processing_delay has passed; with delay 0 it
        runs on the next request or inspection, so the reply itself still shows the
        in-progress status, as the real platforms do."""
        with self._lock:
            self._pending[key] = (time.monotonic() + self.processing_delay, complete)

    def _advance(self, force: bool = False) -> None:
        """Complete every pending item that is due (all of them when forced)."""
        with self._lock:
            if not self._pending:
                return
            now = time.monotonic()
            due = sorted(
                ((when, key) for key, (when, _) in self._pending.items() if force or when <= now),
                key=lambda item: item[0],
            )
            for _, key in due:
                _, complete = self._pending.pop(key)
                complete()

    def process_all(self) -> None:
        """Finish all pending processing now (tests do not have to sleep)."""
        self._advance(force=True)

    # --- quota -----------------------------------------------------------------------------

    def _take_quota(self) -> None:
        """Count one create/modify call; over quota_per_minute -> 429 with Retry-After: 1."""
        if self.quota_per_minute is None:
            return
        with self._lock:
            now = time.monotonic()
            while self._quota_calls and self._quota_calls[0] <= now - 60:
                self._quota_calls.popleft()
            if len(self._quota_calls) >= self.quota_per_minute:
                raise self.error(
                    429,
                    self.code_for_status(429),
                    f"Quota exceeded: at most {self.quota_per_minute} create/modify calls "
                    "per minute",
                    {"Retry-After": "1"},
                )
            self._quota_calls.append(now)

    # --- inspection ------------------------------------------------------------------------

    def calls(self, path_suffix: str, method: str | None = None) -> int:
        """How many logged requests had a path ending with `path_suffix` (and `method`)."""
        with self._lock:
            return sum(
                1
                for entry in self.requests
                if entry["path"].endswith(path_suffix)
                and (method is None or entry["method"] == method)
            )

    # --- WSGI ------------------------------------------------------------------------------

    def _draw_fault(self, request: Request) -> tuple[str | None, bool]:
        with self._lock:
            if self.fault_rate <= 0 or self._rng.random() >= self.fault_rate:
                return None, False
            kind = self._rng.choice(self.fault_kinds)
            process_first = (
                kind == "timeout"
                and request.method == "POST"
                and self._rng.random() < self.timeout_processes
            )
            return kind, process_first

    def _fault_reply(self, status: int) -> Response:
        headers = {"Retry-After": "1"} if status == 429 else None
        message = "Too many requests" if status == 429 else "Service temporarily unavailable"
        return json_response(
            self.error_body(status, self.code_for_status(status), message), status, headers
        )

    def _dispatch(self, request: Request) -> Response:
        self._advance()
        try:
            return self.handle(request)
        except StubReply as reply:
            return json_response(reply.body, reply.status, reply.headers)
        except HTTPException as exc:  # e.g. 413 from the form parser
            status = exc.code or 400
            body = self.error_body(status, self.code_for_status(status), exc.description or "")
            return json_response(body, status)
        except Exception:  # a stub bug: show it in the test output
            traceback.print_exc(file=sys.stderr)
            return json_response(
                self.error_body(500, self.code_for_status(500), "stub crashed"), 500
            )

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = StubRequest(environ)
        request_id = uuid.uuid4().hex
        fault, process_first = self._draw_fault(request)
        if fault == "429":
            response = self._fault_reply(429)
        elif fault == "503":
            response = self._fault_reply(503)
        elif fault == "timeout" and not process_first:
            self._stopping.wait(self.timeout_sleep)
            response = self._fault_reply(503)
        else:
            response = self._dispatch(request)
            if fault == "timeout":  # the work is done, the reply comes too late
                self._stopping.wait(self.timeout_sleep)
        response.headers["X-Request-Id"] = request_id
        self.decorate(request, response)
        entry = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "request_id": request_id,
            "fault": ("timeout_after_processing" if process_first else fault),
        }
        with self._lock:
            self.requests.append(entry)
        if self.log_requests:
            where = request.full_path.rstrip("?")
            note = f" (fault {entry['fault']})" if fault else ""
            print(
                f"[{type(self).__name__}:{self.port}] {request.method} {where}"
                f" -> {response.status_code}{note}",
                flush=True,
            )
        return response(environ, start_response)
