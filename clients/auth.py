"""API authentication by per-client keys (the request's ``auth`` is the key, and the key's
``client`` is the client the request acts for: ``agency.api.request_client``).

Wrong keys are counted per client address, here and nowhere else: after
``API_KEY_FAILURE_LIMIT`` wrong or empty keys within a minute, every request with an API key
from that address answers 429 ``throttled`` with Retry-After for a minute (a good key too: a
guess that happens to be right must not be told apart). Counters live in Django's cache: in
production a shared one (``CACHE_URL`` on Redis), so that every web process counts together.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.throttling import SimpleRateThrottle

from agency.audit import request_ip

from .models import ApiKey
from .selectors import api_key_find_active

logger = logging.getLogger(__name__)

API_KEY_KEYWORD = "Api-Key"

# Failures are counted in buckets of BUCKET_SECONDS; the sum over the buckets of the last
# FAILURE_WINDOW seconds (and a little more, never less) is compared with the limit, so at most
# API_KEY_FAILURE_LIMIT failures pass in any minute. Reaching it blocks the address for
# BLOCK_SECONDS.
FAILURE_WINDOW = 60
BUCKET_SECONDS = 10
BLOCK_SECONDS = 60


class TooManyFailedKeys(exceptions.Throttled):
    """429 ``throttled`` with Retry-After: too many wrong keys from one address."""

    def __init__(self, wait: int):
        super().__init__(
            detail=_("Слишком много неверных API-ключей с этого адреса; повторите через %(s)s с.")
            % {"s": wait}
        )
        self.wait = wait  # DRF's handler sends it as Retry-After


def _address(request) -> str:
    return request_ip(request) or "unknown"


def api_key_blocked_for(request) -> int:
    """Seconds until the request's address may try API keys again; 0 when it may now."""
    until = cache.get(f"api-key-failures:block:{_address(request)}")
    if until is None:
        return 0
    left = math.ceil(until - time.time())
    return left if left > 0 else 0


def api_key_failure_record(request) -> None:
    """Count a wrong (or empty) key from the request's address; block the address once the
    last minute holds API_KEY_FAILURE_LIMIT of them."""
    address = _address(request)
    now = time.time()
    bucket = int(now // BUCKET_SECONDS)
    key = f"api-key-failures:{address}:{bucket}"
    timeout = FAILURE_WINDOW + 2 * BUCKET_SECONDS
    cache.add(key, 0, timeout=timeout)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)
    first = bucket - math.ceil(FAILURE_WINDOW / BUCKET_SECONDS)
    keys = [f"api-key-failures:{address}:{b}" for b in range(first, bucket + 1)]
    failures = sum(cache.get_many(keys).values())
    if failures >= settings.API_KEY_FAILURE_LIMIT:
        cache.set(f"api-key-failures:block:{address}", now + BLOCK_SECONDS, timeout=BLOCK_SECONDS)
        logger.warning(
            "API keys from %s blocked for %s s: %s wrong keys within a minute",
            address,
            BLOCK_SECONDS,
            failures,
        )


class ApiKeyPrincipal:
    """The "user" of a request authenticated by an API key: the key itself, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"

    def get_username(self) -> str:
        return str(self)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the key header in the OpenAPI schema."""

    target_class = "clients.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: one key reaches exactly one client.",
        }


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Api-Key <key>``; a key reaches exactly one client."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _sep, raw_key = header.partition(" ")
        if keyword.lower() != API_KEY_KEYWORD.lower():
            return None
        wait = api_key_blocked_for(request)
        if wait:
            raise TooManyFailedKeys(wait)
        raw_key = raw_key.strip()
        if not raw_key:
            api_key_failure_record(request)
            raise exceptions.AuthenticationFailed(_("Пустой API-ключ."))
        api_key = api_key_find_active(raw_key=raw_key)
        if api_key is None:
            api_key_failure_record(request)
            raise exceptions.AuthenticationFailed(_("Неверный или отозванный API-ключ."))
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return API_KEY_KEYWORD


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per-key (or per-user) request rate."""

    scope = "api_key"

    def get_cache_key(self, request, view):
        if isinstance(getattr(request, "auth", None), ApiKey):
            ident = f"key:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
