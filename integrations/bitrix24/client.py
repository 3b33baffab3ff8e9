"""Bitrix24 REST through a client's inbound webhook: ``crm.contact.get`` and ``crm.deal.get``.

Bitrix24's outbound webhooks (ONCRMCONTACTADD, ONCRMDEALUPDATE...) carry only
``data[FIELDS][ID]``; the fields are read back through the REST API. A client connects by giving
the URL of an inbound webhook it created in its portal ("Разработчикам → Другое → Входящий
вебхук", with the ``crm`` scope):

    https://<portal>.bitrix24.ru/rest/<user_id>/<token>/

The user id and token are the credential (the caller stores the URL encrypted). The method is
appended to it: ``.../rest/<user_id>/<token>/crm.contact.get.json`` with the parameter ``id``
(query, form or JSON body; POST or GET). A reply is ``{"result": {...}, "time": {...}}``; an
error ``{"error": "<CODE>", "error_description": "<text>"}``: 401 INVALID_CREDENTIALS, 403
ACCESS_DENIED / insufficient_scope, 400 with an empty code and "Not found" or "ID is not defined
or invalid." for a missing entity, 503 QUERY_LIMIT_EXCEEDED (more than about 2 requests a second),
500 INTERNAL_SERVER_ERROR.

Against SSRF the host is not the tenant's to choose: only Bitrix24 cloud portals are accepted
(``<name>.bitrix24.<zone>`` for the zones in :data:`CLOUD_DOMAINS`), over HTTPS on the default
port. ``BITRIX24_BASE_URL`` (deployment configuration, for a proxy or the test stub) replaces
the portal's scheme and host; the path (user id and token) is the client's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.utils.translation import gettext as _

from ..http import PlatformError, PlatformHttp, base_url_setting

# Bitrix24 cloud portals live under these domains (one per region and language).
CLOUD_DOMAINS = (
    "bitrix24.ru",
    "bitrix24.by",
    "bitrix24.kz",
    "bitrix24.ua",
    "bitrix24.com",
    "bitrix24.de",
    "bitrix24.eu",
    "bitrix24.es",
    "bitrix24.fr",
    "bitrix24.it",
    "bitrix24.pl",
    "bitrix24.uk",
    "bitrix24.in",
    "bitrix24.cn",
    "bitrix24.jp",
    "bitrix24.id",
    "bitrix24.vn",
    "bitrix24.com.br",
    "bitrix24.com.tr",
)
DEFAULT_TIMEOUT = 20.0
_PORTAL_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PATH = re.compile(r"/rest/(?P<user_id>[1-9][0-9]{0,9})/(?P<token>[A-Za-z0-9]{6,64})/?")


class Bitrix24UrlInvalid(ValueError):
    """Not the URL of a Bitrix24 cloud inbound webhook; the message says why, in Russian."""


@dataclass(frozen=True)
class RestWebhook:
    """A parsed inbound-webhook URL: the portal's host, the user id and the token."""

    host: str
    user_id: str
    token: str

    @property
    def url(self) -> str:
        return f"https://{self.host}/rest/{self.user_id}/{self.token}/"


def rest_webhook_parse(url: str) -> RestWebhook:
    """Check an inbound-webhook URL; raise :class:`Bitrix24UrlInvalid` unless it is
    ``https://<portal>.<a Bitrix24 cloud domain>/rest/<user id>/<token>/``."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise Bitrix24UrlInvalid(_("Адрес не читается: %(error)s.") % {"error": exc}) from exc
    if parts.scheme != "https":
        raise Bitrix24UrlInvalid(_("Адрес вебхука Битрикс24 начинается с https://."))
    if parts.username or parts.password or port not in (None, 443):
        raise Bitrix24UrlInvalid(_("В адресе вебхука не бывает логина, пароля или порта."))
    host = (parts.hostname or "").rstrip(".").lower()
    zone = next((d for d in CLOUD_DOMAINS if host.endswith("." + d)), None)
    label = host[: -len(zone) - 1] if zone else ""
    if zone is None or not _PORTAL_LABEL.fullmatch(label):
        raise Bitrix24UrlInvalid(
            _(
                "Принимаются только облачные порталы Битрикс24 (<портал>.bitrix24.ru, .by, .kz, "
                ".com и т. п.), не %(host)s."
            )
            % {"host": host or _("пустой адрес")}
        )
    match = _PATH.fullmatch(parts.path)
    if match is None or parts.query or parts.fragment:
        raise Bitrix24UrlInvalid(
            _(
                "Адрес входящего вебхука выглядит так: https://<портал>.bitrix24.ru/rest/<id "
                "пользователя>/<код вебхука>/ (без метода в конце)."
            )
        )
    return RestWebhook(host=host, user_id=match["user_id"], token=match["token"])


def bitrix24_error(response: httpx.Response) -> tuple[str, str]:
    """``{"error": "<CODE>", "error_description": "<text>"}``, in Bitrix24's own words."""
    try:
        body = response.json()
    except ValueError:
        return "http_error", f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return "http_error", f"HTTP {response.status_code}"
    code = str(body.get("error") or response.status_code)
    description = str(body.get("error_description") or body.get("error") or "").strip()
    return code, description[:300] or f"HTTP {response.status_code}"


def base_url(webhook: RestWebhook) -> str:
    """Where the client's calls go: ``BITRIX24_BASE_URL`` (a proxy or the stub) when set, else
    the portal itself; the path carries the client's user id and token."""
    root = base_url_setting("BITRIX24_BASE_URL", f"https://{webhook.host}/")
    return f"{root.rstrip('/')}/rest/{webhook.user_id}/{webhook.token}/"


class Bitrix24Client:
    """The calls the platform makes to a client's portal (read-only)."""

    def __init__(self, *, webhook_url: str, **http_options: Any) -> None:
        webhook = rest_webhook_parse(webhook_url)
        http_options.setdefault("timeout", DEFAULT_TIMEOUT)
        self.portal = webhook.host
        self.http = PlatformHttp(base_url(webhook), error_parser=bitrix24_error, **http_options)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Bitrix24Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> Any:
        """``result`` of one REST method (POST, JSON body)."""
        response = self.http.request("POST", f"{method}.json", json=params)
        try:
            body = response.json()
        except ValueError as exc:
            raise PlatformError(
                _("%(method)s: ответ не JSON") % {"method": method},
                status=response.status_code,
                code="bad_reply",
            ) from exc
        if not isinstance(body, dict) or "result" not in body:
            code, message = bitrix24_error(response)
            raise PlatformError(f"{method}: {message}", status=response.status_code, code=code)
        return body["result"]

    def _entity(self, method: str, entity_id: str | int) -> dict[str, Any]:
        result = self.call(method, id=str(entity_id))
        if not isinstance(result, dict):
            raise PlatformError(
                _("%(method)s: в ответе нет полей") % {"method": method}, code="bad_reply"
            )
        return result

    def contact_get(self, contact_id: str | int) -> dict[str, Any]:
        """The contact's fields (ID, NAME, LAST_NAME, EMAIL and PHONE lists, ...)."""
        return self._entity("crm.contact.get", contact_id)

    def deal_get(self, deal_id: str | int) -> dict[str, Any]:
        """The deal's fields (ID, STAGE_ID, STAGE_SEMANTIC_ID, OPPORTUNITY, CONTACT_ID, ...)."""
        return self._entity("crm.deal.get", deal_id)


def is_not_found(error: PlatformError) -> bool:
    """Bitrix24's "no such entity" (400 "Not found", or an id it does not take)."""
    text = (error.message or "").lower()
    return error.status in (400, 404) and ("not found" in text or "not defined" in text)
