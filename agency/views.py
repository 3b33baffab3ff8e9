"""Django's error handlers where the API needs its own (config.urls registers them)."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from .errors import error_for_exception
from .middleware import is_api_request, json_error_response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: under /api/ the JSON error of the exception being handled (a database outage
    raised in middleware, e.g. loading the session, is 503 with Retry-After); elsewhere Django's
    page. Django has logged and signalled the exception already."""
    exc = sys.exc_info()[1]
    if is_api_request(request) and exc is not None:
        return json_error_response(error_for_exception(exc, request=None))
    return defaults.server_error(request)
