"""Shared DRF pieces: the client-scoping viewset mixin, JSON errors, cursor pagination."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import models
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, permissions
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from .errors import ServiceError, error_for_exception
from .roles import user_clients
from .tenancy import get_from_scoped_or_404


class ApiError(ServiceError):
    """An error a view raises about the request itself (its body, a filter, a header): a
    ``ServiceError`` like the services' own, with the view-side ``status_code`` keyword."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int | None = None,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, field=field, status=status_code, extra=extra)


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

# Django answers these itself (400 and its security log); agency.middleware makes them JSON.
_LEFT_TO_DJANGO = (BadRequest, SuspiciousOperation, MultiPartParserError)


def service_error_response(error: ServiceError) -> Response:
    """``error`` as the API answers it: its status, ``as_dict()`` and Retry-After if it has one;
    a transaction of the request (ATOMIC_REQUESTS) is rolled back as for DRF's own errors."""
    set_rollback()
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return Response(error.as_dict(), status=error.status, headers=headers)


def json_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every failure of a DRF view is ``{"code": ..., "message": ..., ...}``: a service error
    with its own status, DRF's errors with a code per class, a database outage 503 with
    Retry-After, anything unexpected 500 (logged, no traceback in the body)."""
    if isinstance(exc, ServiceError):
        return service_error_response(exc)
    if isinstance(exc, _LEFT_TO_DJANGO):
        return None
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(_("Не найдено."))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return service_error_response(error_for_exception(exc, request=context["request"]._request))
    code = next((c for cls, c in _CODE_BY_CLASS.items() if isinstance(exc, cls)), "error")
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        message = str(_("Некорректные данные."))
        body: dict[str, Any] = {"code": code, "message": message, "errors": detail}
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


class ApiDocsPermission(permissions.BasePermission):
    """The OpenAPI schema and Swagger UI: for anyone signed in (a session or an API key), and
    for everyone only where ``API_DOCS_PUBLIC`` says so (by default only with DEBUG)."""

    def has_permission(self, request, view) -> bool:
        return bool(settings.API_DOCS_PUBLIC or (request.user and request.user.is_authenticated))


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
