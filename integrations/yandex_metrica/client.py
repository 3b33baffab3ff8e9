"""Yandex Metrica offline conversions (https://api-metrika.yandex.net/management/v1/).

Facts in ../shared/reference/channels-and-integrations.md (documented): ``Authorization: OAuth
<token>``; ``POST counter/{id}/offline_conversions/upload?client_id_type=CLIENT_ID|USER_ID
&comment=...`` with a multipart field ``file``: a UTF-8 CSV with a header, one of ``ClientId``
/ ``UserId``, then ``Target``, ``DateTime`` (unix seconds, in the past), ``Price``, ``Currency``
(ISO 4217). Reply ``{"uploading": {"id", "create_time", "source_quantity", "line_quantity",
"status", ...}}``; ``GET counter/{id}/offline_conversions/uploading/{id}`` gives the status
(``PROCESSED`` done, ``LINKAGE_FAILURE`` rejected (3p)), ``.../uploadings`` the list. Errors are
shaped as Yandex Audiences' (``yandex_error``), 429 on quota.

An upload is never repeated blindly after a timeout: it carries a deterministic ``comment`` and
:meth:`YandexMetricaClient.uploading_by_comment` finds it before a second try.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..http import PlatformHttp, base_url_setting
from ..yandex_audiences import yandex_error

DEFAULT_BASE_URL = "https://api-metrika.yandex.net/management/v1/"
CLIENT_ID = "CLIENT_ID"
USER_ID = "USER_ID"
ID_COLUMN = {CLIENT_ID: "ClientId", USER_ID: "UserId"}
FINAL_STATUSES = frozenset({"PROCESSED", "LINKAGE_FAILURE"})


@dataclass(frozen=True)
class OfflineConversion:
    visitor_id: str  # the ClientID or the UserId, by the upload's client_id_type
    target: str
    at: datetime
    price: Decimal
    currency: str = "RUB"


def conversions_csv(rows: Iterable[OfflineConversion], *, client_id_type: str) -> bytes:
    """The upload file: UTF-8, a header, ``DateTime`` as unix seconds, ``Price`` with a dot."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([ID_COLUMN[client_id_type], "Target", "DateTime", "Price", "Currency"])
    for row in rows:
        writer.writerow(
            [
                row.visitor_id,
                row.target,
                int(row.at.timestamp()),
                f"{row.price.quantize(Decimal('0.01'))}",
                row.currency,
            ]
        )
    return buffer.getvalue().encode("utf-8")


class YandexMetricaClient:
    """``credentials``: ``{"token"}`` (an OAuth token with access to the counter)."""

    def __init__(
        self, credentials: dict[str, Any], *, base_url: str | None = None, **http_options: Any
    ) -> None:
        token = str(credentials.get("token") or "")
        if not token:
            raise ValueError("Яндекс Метрика: нужен token")
        self.http = PlatformHttp(
            base_url or base_url_setting("YANDEX_METRICA_BASE_URL", DEFAULT_BASE_URL),
            error_parser=yandex_error,
            headers={"Authorization": f"OAuth {token}"},
            **http_options,
        )

    def close(self) -> None:
        self.http.close()

    def upload(
        self, counter: str, content: bytes, *, client_id_type: str, comment: str
    ) -> dict[str, Any]:
        """Upload a conversions file; returns the ``uploading`` object (``id``, ``status``,
        ``line_quantity``, ...). A timeout raises ``OutcomeUnknown``: look it up by comment."""
        if client_id_type not in ID_COLUMN:
            raise ValueError(f"client_id_type: {client_id_type!r}")
        return self.http.request(
            "POST",
            f"counter/{counter}/offline_conversions/upload",
            params={"client_id_type": client_id_type, "comment": comment},
            creates=True,
            before_attempt=lambda: {
                "files": {"file": ("conversions.csv", io.BytesIO(content), "text/csv")}
            },
        ).json()["uploading"]

    def uploading(self, counter: str, uploading_id: int | str) -> dict[str, Any]:
        return self.http.request(
            "GET", f"counter/{counter}/offline_conversions/uploading/{uploading_id}"
        ).json()["uploading"]

    def uploadings(self, counter: str) -> list[dict[str, Any]]:
        return (
            self.http.request("GET", f"counter/{counter}/offline_conversions/uploadings")
            .json()
            .get("uploadings", [])
        )

    def uploading_by_comment(self, counter: str, comment: str) -> dict[str, Any] | None:
        return next((u for u in self.uploadings(counter) if u.get("comment") == comment), None)


def base_url() -> str:
    """``YANDEX_METRICA_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("YANDEX_METRICA_BASE_URL", DEFAULT_BASE_URL)
