"""Request guards that must answer before a view (and its body parsing) runs."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


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
                return JsonResponse(
                    {
                        "code": "payload_too_large",
                        "message": f"Тело запроса {length} байт больше предела {limit} байт; "
                        f"разбейте данные на запросы до {settings.BULK_MAX_RECORDS} записей.",
                    },
                    status=413,
                )
        return self.get_response(request)
