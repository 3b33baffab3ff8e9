"""Shared DRF pieces: the client-scoping viewset mixin, JSON errors, cursor pagination."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import models
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from .errors import ServiceError
from .roles import user_clients
from .tenancy import get_from_scoped_or_404


class ApiError(exceptions.APIException):
    """An API error with a stable machine-readable ``code`` and a human message."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, code: str, message: str, *, status_code: int | None = None, extra=None):
        super().__init__(detail=message, code=code)
        self.error_code = code
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


_CODE_BY_CLASS = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
    exceptions.ValidationError: "invalid",
}


def json_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every API error is ``{"code": ..., "message": ..., ...}``."""
    if isinstance(exc, ServiceError):  # a service's refusal, answered as it says
        set_rollback()
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Не найдено.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        body: dict[str, Any] = {"code": exc.error_code, "message": str(exc.detail), **exc.extra}
    else:
        code = next((c for cls, c in _CODE_BY_CLASS.items() if isinstance(exc, cls)), "error")
        detail = response.data
        if isinstance(exc, exceptions.ValidationError):
            body = {"code": code, "message": "Некорректные данные.", "errors": detail}
        else:
            message = detail.get("detail", detail) if isinstance(detail, dict) else detail
            body = {"code": code, "message": str(message)}
    response.data = body
    return response


def request_client(request: Any) -> Any:
    """The client a request acts for. API key: its client. Session: ``X-Client`` header or
    ``?client=`` slug among the user's clients, or the only one they have. Unknown and foreign
    slugs give the same 404."""
    cached = getattr(request, "_cvm_client", None)
    if cached is not None:
        return cached
    auth = getattr(request, "auth", None)
    if getattr(auth, "client_id", None) is not None:  # a per-client credential (an API key)
        client = auth.client
        if not client.is_active:
            raise exceptions.PermissionDenied(_("Клиент отключён."))
    else:
        clients = user_clients(request.user)
        slug = request.headers.get("X-Client") or request.GET.get("client")
        if slug:
            client = clients.filter(slug=slug).first()
            if client is None:
                raise Http404("client not found")
        else:
            found = list(clients[:2])
            if len(found) != 1:
                raise exceptions.ValidationError(
                    {"client": [_("Укажите клиента заголовком X-Client или параметром ?client=.")]}
                )
            client = found[0]
    request._cvm_client = client
    return client


class UpdatedCursorPagination(CursorPagination):
    """Stable cursor over (updated_at, id): rows written during paging are not skipped."""

    ordering = ("updated_at", "id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class ClientScopedViewSetMixin:
    """Scopes every queryset and object look-up to the client of the request.

    Subclasses set ``model`` and may narrow the queryset in ``safely_get_queryset``; they may
    not override ``get_queryset``/``get_object`` (refused at class creation), so no view can
    forget the filter.
    """

    model: type[models.Model]
    lookup_field = "pk"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("get_queryset", "get_object"):
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {name}; write safely_get_queryset instead"
                )

    @property
    def client(self):
        return request_client(self.request)

    def safely_get_queryset(self, queryset: models.QuerySet) -> models.QuerySet:
        return queryset

    def get_queryset(self) -> models.QuerySet:
        return self.safely_get_queryset(self.model.objects.for_client(self.client))

    def get_object(self) -> models.Model:
        lookup_url_kwarg = self.lookup_url_kwarg or self.lookup_field
        queryset = self.filter_queryset(self.get_queryset())
        obj = get_from_scoped_or_404(queryset, **{self.lookup_field: self.kwargs[lookup_url_kwarg]})
        self.check_object_permissions(self.request, obj)
        return obj
