"""Request guards that must answer before a view (and its body parsing) runs."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.response import Response

from .audit import is_trusted_proxy
from .errors import SERVER_ERROR_MESSAGE, ServiceError, error_for_exception
from .parsers import check_form_text


class TrustedProxyMiddleware:
    """Proxy headers count only from a trusted proxy (``TRUSTED_PROXIES``): from any other peer
    X-Forwarded-Proto is dropped before Django reads it (``SECURE_PROXY_SSL_HEADER``, so a
    plain-HTTP request cannot pass as HTTPS). X-Forwarded-For is read by
    ``agency.audit.request_ip`` alone, which applies the same rule."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "HTTP_X_FORWARDED_PROTO" in request.META and not is_trusted_proxy(
            request.META.get("REMOTE_ADDR")
        ):
            del request.META["HTTP_X_FORWARDED_PROTO"]
        return self.get_response(request)


class ApiBodyLimitMiddleware:
    """API bodies above API_MAX_BODY_BYTES get a JSON 413 instead of being read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.API_MAX_BODY_BYTES
            if length > limit:
                # Before LocaleMiddleware: the language of the request is asked for here.
                with translation.override(translation.get_language_from_request(request)):
                    message = _(
                        "Тело запроса %(length)s байт больше предела %(limit)s байт; разбейте "
                        "данные на запросы до %(records)s записей."
                    ) % {"length": length, "limit": limit, "records": settings.BULK_MAX_RECORDS}
                return JsonResponse(
                    {"code": "payload_too_large", "message": str(message)}, status=413
                )
        return self.get_response(request)


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


class QueryTextMiddleware:
    """A query parameter holding a NUL character (or a lone surrogate) is refused with a 400
    naming it, on every page: no filter, search or key look-up sends it to PostgreSQL, which
    cannot take it. JSON under /api/ and for the public JSON endpoints (``/consent/api/``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.META.get("QUERY_STRING"):
            try:
                check_form_text(request.GET)
            except ServiceError as error:
                if "/api/" in request.path_info:  # /api/... and the public /consent/api/...
                    return json_error_response(error)
                return HttpResponseBadRequest(error.message, content_type="text/plain")
        return self.get_response(request)


def json_error_response(error: ServiceError) -> JsonResponse:
    """A service error as a plain Django response, for failures outside DRF views."""
    response = JsonResponse(error.as_dict(), status=error.status)
    if error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    return response


# Django's own answers to these (404, 403, 400 with its security log) are kept, made JSON below.
_ANSWERED_BY_DJANGO = (
    Http404,
    PermissionDenied,
    BadRequest,
    SuspiciousOperation,
    MultiPartParserError,
)

_ERROR_BY_STATUS = {
    400: ("bad_request", gettext_lazy("Некорректный запрос.")),
    403: ("permission_denied", gettext_lazy("Доступ запрещён.")),
    404: ("not_found", gettext_lazy("Не найдено.")),
    405: ("method_not_allowed", gettext_lazy("Метод не разрешён.")),
    500: ("server_error", SERVER_ERROR_MESSAGE),
}


class ApiErrorMiddleware:
    """Under /api/ every failure is JSON, also where no DRF view answers (DRF views have
    ``agency.api.json_exception_handler``):

    - an exception of a plain view becomes its service error, a database outage 503 with
      Retry-After, anything else 500 (logged), by ``agency.errors.error_for_exception``;
    - an HTML error page (an unknown URL, a wrong method of a plain view, Django's 400/403,
      ``handler500`` in DEBUG) is replaced by ``{"code", "message"}`` with its status. DRF's
      own responses are left to its content negotiation (the browsable API).

    Exceptions raised by other middleware reach ``agency.views.server_error`` (handler500).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api_request(request)
            and not isinstance(response, Response)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            code, message = _ERROR_BY_STATUS.get(
                response.status_code, ("error", response.reason_phrase)
            )
            replaced = json_error_response(ServiceError(code, message, status=response.status_code))
            if "Allow" in response:
                replaced["Allow"] = response["Allow"]
            return replaced
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_request(request) or isinstance(exception, _ANSWERED_BY_DJANGO):
            return None
        return json_error_response(error_for_exception(exception, request=request))
