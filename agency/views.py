"""Django's error handlers where the API needs its own (config.urls registers them), and the
page of a locked-out login (django-axes calls it: ``AXES_LOCKOUT_CALLABLE``)."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
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


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """A sign-in refused because the username or the address has failed too often: 429 with
    the page of the sign-in it came from (the admin's look under /admin/, else the portal's),
    saying why, for how long, and who can unlock it."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes}
    if request.path.startswith("/admin/"):
        template = "admin/login_locked_out.html"
        context.update(admin.site.each_context(request))
    else:
        template = "portal/login_locked_out.html"
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response
