"""API authentication by per-client keys (the request's ``auth`` is the key, and the key's
``client`` is the client the request acts for: ``agency.api.request_client``)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiKey
from .selectors import api_key_find_active

API_KEY_KEYWORD = "Api-Key"


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
        raw_key = raw_key.strip()
        if not raw_key:
            raise exceptions.AuthenticationFailed(_("Пустой API-ключ."))
        api_key = api_key_find_active(raw_key=raw_key)
        if api_key is None:
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
