"""The cookie banner: its script, the public endpoint it posts choices to, and a demo shop page.

Public by design, with no session and no API key: a site is named by its public ``site_key``
(which reaches exactly one client), the browser's ``Origin`` must be one of the site's allowed
origins (CORS), and posts are rate-limited per IP and site. Each choice becomes one consent
record per cookie category through :func:`consent.services.consent_record_append`, with
source ``cookie_banner`` and the visitor's IP, user agent and page as evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from agency.api import ApiError
from agency.audit import request_ip
from agency.parsers import JSONParser

from .models import ConsentPurpose, ConsentRecord, ConsentSite, ConsentText
from .purposes import AD_COOKIES, ANALYTICS_COOKIES
from .services import Evidence, consent_record_append, latest_published_text

BANNER_COOKIE = "cvm_consent"
BANNER_COOKIE_DAYS = 180
BANNER_MAX_BODY_BYTES = 8 * 1024
SUBJECT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
DEFAULT_PORTS = {"http": 80, "https": 443}


# ---------------------------------------------------------------------------------------------
# Sites, origins, texts


def banner_site(site_key: str) -> ConsentSite | None:
    """The active site of an active client with this public key, or None."""
    if not site_key or len(site_key) > 64:
        return None
    # The key itself is the scope here: it names exactly one site of one client.
    return (
        ConsentSite.objects.unscoped()
        .select_related("client")
        .filter(site_key=site_key, is_active=True, client__is_active=True)
        .first()
    )


def normalize_origin(value: Any) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None when not an origin."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def site_allows_origin(site: ConsentSite, origin: Any) -> bool:
    wanted = normalize_origin(origin)
    if wanted is None:
        return False
    allowed = site.allowed_origins if isinstance(site.allowed_origins, list) else []
    return any(normalize_origin(o) == wanted for o in allowed)


def cookie_purposes() -> list[ConsentPurpose]:
    return list(ConsentPurpose.objects.filter(is_cookie=True).order_by("position"))


def banner_config(site: ConsentSite) -> dict[str, Any]:
    """What the script needs: where to post, and the client's published texts per category."""
    categories = []
    operator: dict[str, str] = {}
    for purpose in cookie_purposes():
        text = latest_published_text(client=site.client, purpose=purpose)
        if text is None:  # no text, no provable consent: the category is not offered
            continue
        operator = operator or {"name": text.operator_name, "address": text.operator_address}
        categories.append(
            {
                "code": purpose.code,
                "name": purpose.name,
                "textVersion": text.version,
                "title": text.title,
                "operatorName": text.operator_name,
                "operatorAddress": text.operator_address,
                "purpose": text.purpose_text,
                "dataList": text.data_list,
                "processors": text.processors,
                "actions": text.actions,
                "term": text.term,
                "withdrawal": text.withdrawal,
                "body": text.body,
            }
        )
    endpoint = settings.PUBLIC_BASE_URL + reverse("consent:banner-api")
    return {
        "siteKey": site.site_key,
        "endpoint": f"{endpoint}?{urlencode({'site': site.site_key})}",
        "cookieName": BANNER_COOKIE,
        "cookieDays": BANNER_COOKIE_DAYS,
        "operator": operator,
        "categories": categories,
    }


def _js_literal(value: Any) -> str:
    """JSON that is also safe to embed in a script, whatever the texts contain."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


@lru_cache(maxsize=4)
def _read_source(file_path: str, _mtime_ns: int) -> str:
    with open(file_path, encoding="utf-8") as handle:
        return handle.read()


def banner_source() -> str:
    file_path = finders.find("consent/banner.js")
    if not file_path:
        raise FileNotFoundError("static/consent/banner.js is missing")
    return _read_source(file_path, os.stat(file_path).st_mtime_ns)


# ---------------------------------------------------------------------------------------------
# GET /consent/banner.js?site=KEY


def _javascript(body: str, *, status_code: int = 200, max_age: int = 300) -> HttpResponse:
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8", status=status_code)
    response["Cache-Control"] = f"public, max-age={max_age}"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def banner_js(request: HttpRequest) -> HttpResponse:
    site = banner_site(request.GET.get("site", ""))
    if site is None:
        return _javascript(
            'console.warn("cvm consent: unknown or inactive site key");\n',
            status_code=404,
            max_age=60,
        )
    config = _js_literal(banner_config(site))
    return _javascript(f"window.CVM_CONSENT_CONFIG = {config};\n{banner_source()}")


# ---------------------------------------------------------------------------------------------
# POST /consent/api/banner/?site=KEY


class BannerChoiceSerializer(serializers.Serializer):
    """The banner's post (documentation; the checks are in :func:`parse_banner_choice`)."""

    subject_id = serializers.RegexField(SUBJECT_ID_RE, help_text="Анонимный id из cookie")
    choices = serializers.DictField(
        child=serializers.BooleanField(), help_text='{"analytics_cookies": true, ...}'
    )
    texts = serializers.DictField(
        child=serializers.IntegerField(),
        required=False,
        help_text="Показанные версии текстов по категориям",
    )
    url = serializers.CharField(required=False, max_length=1000, help_text="Страница выбора")


class BannerRateThrottle(SimpleRateThrottle):
    """Posts per IP and site key (preflights are not counted: they write nothing)."""

    scope = "consent_banner"

    def get_rate(self) -> str:
        return settings.CONSENT_BANNER_RATE

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        site = hashlib.sha256(request.query_params.get("site", "").encode()).hexdigest()[:24]
        ip = request_ip(request) or ""
        return self.cache_format % {"scope": self.scope, "ident": f"{site}:{ip}"}


def parse_banner_choice(data: Any, *, site: ConsentSite, origin: str) -> dict[str, Any]:
    """The post's shape: a subject id, a boolean per known cookie category, the page URL."""
    if not isinstance(data, dict):
        raise ApiError("invalid_body", "Тело запроса — JSON-объект.")
    errors: dict[str, str] = {}
    subject_id = data.get("subject_id")
    if not isinstance(subject_id, str) or not SUBJECT_ID_RE.match(subject_id):
        errors["subject_id"] = "Ожидается id из 8–64 символов A–Z, a–z, 0–9, _ и -."
    known = {p.code: p for p in cookie_purposes()}
    choices = data.get("choices")
    if not isinstance(choices, dict) or not choices:
        errors["choices"] = "Ожидается объект {категория: true|false}."
        choices = {}
    for code, value in choices.items():
        if code not in known:
            errors[f"choices.{code}"] = "Неизвестная категория; есть: " + ", ".join(known) + "."
        elif not isinstance(value, bool):
            errors[f"choices.{code}"] = "Ожидается true или false."
    texts: dict[str, ConsentText | None] = {}
    shown = data.get("texts") or {}
    if not isinstance(shown, dict):
        errors["texts"] = "Ожидается объект {категория: версия}."
        shown = {}
    for code in choices:
        version = shown.get(code)
        if version is None or code not in known:
            texts[code] = None
            continue
        text = None
        if isinstance(version, int) and not isinstance(version, bool):
            text = (
                ConsentText.objects.for_client(site.client)
                .filter(purpose=known[code], version=version)
                .first()
            )
        if text is None or not text.is_published:
            errors[f"texts.{code}"] = "Нет такой опубликованной версии текста."
        texts[code] = text
    url = data.get("url") or ""
    if not isinstance(url, str) or len(url) > 1000:
        errors["url"] = "Ожидается адрес страницы до 1000 символов."
    elif url and normalize_origin(url) != normalize_origin(origin):
        errors["url"] = "Страница не с того origin, откуда пришёл запрос."
    if errors:
        raise ApiError("invalid_body", "Некорректный выбор.", extra={"errors": errors})
    ordered = sorted(choices, key=lambda code: known[code].position)
    return {
        "subject_id": subject_id,
        "choices": {code: choices[code] for code in ordered},
        "texts": texts,
        "url": url,
    }


def banner_choice_record(
    *, site: ConsentSite, choice: dict[str, Any], evidence: Evidence, origin: str
) -> list[ConsentRecord]:
    """One record per category, all or none: a grant for true, a withdrawal (denial) for false."""
    with transaction.atomic():
        return [
            consent_record_append(
                client=site.client,
                purpose_code=code,
                action=ConsentRecord.Action.GRANTED if value else ConsentRecord.Action.WITHDRAWN,
                source=ConsentRecord.Source.COOKIE_BANNER,
                subject_id=choice["subject_id"],
                text=choice["texts"].get(code),
                evidence=evidence,
                details={"site": site.pk, "origin": normalize_origin(origin)},
            )
            for code, value in choice["choices"].items()
        ]


class BannerConsentView(APIView):
    """The endpoint of the banner script. Cross-site by design: no session, so no CSRF (DRF
    views are csrf_exempt and this one authenticates nobody); the site key and the Origin
    check stand in for credentials."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [BannerRateThrottle]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    def _site(self, request) -> ConsentSite | None:
        if not hasattr(self, "_cached_site"):
            self._cached_site = banner_site(request.GET.get("site", ""))
        return self._cached_site

    def _check(self, request) -> tuple[ConsentSite, str]:
        site = self._site(request)
        if site is None:
            raise ApiError(
                "invalid_site_key",
                "Неизвестный или отключённый ключ сайта.",
                status_code=status.HTTP_403_FORBIDDEN,
            )
        origin = request.META.get("HTTP_ORIGIN", "")
        if not site_allows_origin(site, origin):
            raise ApiError(
                "origin_not_allowed",
                f"Origin {origin or '(нет)'} не разрешён для этого сайта.",
                status_code=status.HTTP_403_FORBIDDEN,
            )
        return site, origin

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        origin = request.META.get("HTTP_ORIGIN", "")
        site = self._site(request)
        if origin and site is not None and site_allows_origin(site, origin):
            response["Access-Control-Allow-Origin"] = origin
        patch_vary_headers(response, ["Origin"])
        return response

    def options(self, request: Request, *args, **kwargs) -> Response:
        """The CORS preflight: allowed origins only."""
        self._check(request)
        response = Response(status=status.HTTP_204_NO_CONTENT)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = "600"
        return response

    @extend_schema(
        operation_id="consent_banner_choice",
        summary="Выбор посетителя в cookie-баннере (публичный, для banner.js)",
        description=(
            "Без ключа API: сайт — по `?site=KEY`, `Origin` — из разрешённых для сайта. По "
            "записи журнала на категорию: `true` — согласие, `false` — отказ (запись об "
            "отзыве). Ограничено по IP и сайту (429)."
        ),
        auth=[],
        parameters=[OpenApiParameter("site", str, required=True, description="Ключ сайта")],
        request=BannerChoiceSerializer,
        responses={
            201: OpenApiResponse(description="Записано: subject_id, choices, records"),
            400: OpenApiResponse(description="Некорректный выбор (errors по полям)"),
            403: OpenApiResponse(description="invalid_site_key или origin_not_allowed"),
            429: OpenApiResponse(description="Слишком часто"),
        },
        tags=["consent-banner"],
    )
    def post(self, request: Request) -> Response:
        site, origin = self._check(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > BANNER_MAX_BODY_BYTES:
            raise ApiError(
                "payload_too_large",
                f"Тело больше {BANNER_MAX_BODY_BYTES} байт.",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        choice = parse_banner_choice(request.data, site=site, origin=origin)
        evidence = Evidence.from_request(
            request, url=choice["url"], form_id=f"cookie_banner:{site.pk}"
        )
        records = banner_choice_record(site=site, choice=choice, evidence=evidence, origin=origin)
        return Response(
            {
                "subject_id": choice["subject_id"],
                "choices": choice["choices"],
                "records": len(records),
            },
            status=status.HTTP_201_CREATED,
        )


# ---------------------------------------------------------------------------------------------
# GET /consent/demo/?site=KEY


def _first_active_site() -> ConsentSite | None:
    # DEBUG only: the demo without a key shows any client's first active site.
    return (
        ConsentSite.objects.unscoped()
        .select_related("client")
        .filter(is_active=True, client__is_active=True)
        .order_by("pk")
        .first()
    )


DEMO_TAGS = [
    ("metrika", "Яндекс Метрика", ANALYTICS_COOKIES),
    ("top_mail", "Top.Mail.Ru (счётчик VK)", ANALYTICS_COOKIES),
    ("vk_pixel", "VK Реклама: пиксель ретаргетинга", AD_COOKIES),
    ("direct", "Яндекс Директ: ретаргетинг", AD_COOKIES),
]


@require_GET
def banner_demo(request: HttpRequest) -> HttpResponse:
    site_key = request.GET.get("site", "")
    if site_key:
        site = banner_site(site_key)
    else:
        site = _first_active_site() if settings.DEBUG else None
    if site is None:
        return render(
            request, "consent/demo.html", {"site": None, "site_key": site_key}, status=404
        )
    page_origin = normalize_origin(request.build_absolute_uri("/"))
    names = {p.code: p.name for p in cookie_purposes()}
    response = render(
        request,
        "consent/demo.html",
        {
            "site": site,
            "script_url": reverse("consent:banner-js") + "?" + urlencode({"site": site.site_key}),
            "page_origin": page_origin,
            "origin_allowed": site_allows_origin(site, page_origin),
            "tags": [
                {"id": tag_id, "name": name, "category": code, "category_name": names.get(code)}
                for tag_id, name, code in DEMO_TAGS
            ],
        },
    )
    # The page's Content-Security-Policy lets the banner post to its endpoint (PUBLIC_BASE_URL),
    # also when the demo is opened under another host name.
    endpoint_origin = normalize_origin(settings.PUBLIC_BASE_URL)
    if endpoint_origin:
        response._csp_update = {"connect-src": [endpoint_origin]}
    return response


urlpatterns = [
    path("banner.js", banner_js, name="banner-js"),
    path("api/banner/", BannerConsentView.as_view(), name="banner-api"),
    path("demo/", banner_demo, name="demo"),
]
