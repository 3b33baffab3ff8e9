"""Yandex Audiences API client (https://api-audience.yandex.ru/v1/management/).

Facts in ../shared/reference/ad-platforms.md: ``Authorization: OAuth <token>``; CRM data is
uploaded as a CSV (``segments/upload_csv_file``, field ``file``) and confirmed
(``segment/{id}/confirm``, hashed SHA256, content_type crm); changes go through
``segment/{id}/modify_data`` only once the segment is ``processed``; lookalikes come from
``segments/create_lookalike``. Errors: ``{"errors": [{"error_type", "message"}], "message"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from ..http import PlatformHttp, base_url_setting, error_text, unparsed_error

DEFAULT_BASE_URL = "https://api-audience.yandex.ru/v1/management/"
MIN_ROWS = 100  # below this the confirm is refused (unless check_size=false)
PROCESSED = "processed"
FEW_DATA = "few_data"


def yandex_error(response: httpx.Response) -> tuple[str, str]:
    """``(error_type, message)`` from Yandex's error body; any other body is ``HTTP <status>``
    (:func:`~integrations.http.unparsed_error`), never its text."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    if not isinstance(body, dict):
        return unparsed_error(response)
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    if isinstance(first, dict):
        message = error_text(first.get("message")) or error_text(body.get("message"))
        if message:
            location = error_text(first.get("location"))
            if location:
                message = f"{message} ({location})"
            return error_text(first.get("error_type")) or "error", message
    message = error_text(body.get("message"))
    if message:
        return str(body.get("code", response.status_code))[:50], message
    return unparsed_error(response)


class YandexAudiencesClient:
    def __init__(self, *, base_url: str, token: str, **http_options: Any) -> None:
        self.http = PlatformHttp(
            base_url or DEFAULT_BASE_URL,
            error_parser=yandex_error,
            headers={"Authorization": f"OAuth {token}"},
            **http_options,
        )

    def close(self) -> None:
        self.http.close()

    def segments(self) -> list[dict]:
        return self.http.request("GET", "segments").json().get("segments", [])

    def segment(self, segment_id: int) -> dict | None:
        """The segment from the account's list (the API has no single-segment read)."""
        return next((s for s in self.segments() if s.get("id") == segment_id), None)

    def segments_named(self, name: str) -> list[dict]:
        return [s for s in self.segments() if s.get("name") == name]

    def upload_csv(self, path: Path, *, filename: str) -> dict:
        """Upload a CSV; the new segment is named after the file until it is confirmed."""
        return self.http.request(
            "POST",
            "segments/upload_csv_file",
            creates=True,
            before_attempt=lambda: {"files": {"file": (filename, path.open("rb"), "text/csv")}},
        ).json()["segment"]

    def confirm(self, segment_id: int, *, name: str) -> dict:
        body = {
            "segment": {
                "id": segment_id,
                "name": name,
                "hashed": 1,
                "hashing_alg": "SHA256",
                "content_type": "crm",
            }
        }
        return self.http.request("POST", f"segment/{segment_id}/confirm", json=body).json()[
            "segment"
        ]

    def modify(self, segment_id: int, path: Path, *, modification_type: str) -> dict:
        return self.http.request(
            "POST",
            f"segment/{segment_id}/modify_data",
            params={"modification_type": modification_type},
            before_attempt=lambda: {"files": {"file": (path.name, path.open("rb"), "text/csv")}},
        ).json()["segment"]

    def create_lookalike(self, *, name: str, source_id: int, value: int) -> dict:
        body = {
            "segment": {
                "name": name,
                "lookalike_link": source_id,
                "lookalike_value": value,
                "maintain_device_distribution": True,
                "maintain_geo_distribution": True,
            }
        }
        return self.http.request(
            "POST", "segments/create_lookalike", json=body, creates=True
        ).json()["segment"]

    def delete(self, segment_id: int) -> None:
        self.http.request("DELETE", f"segment/{segment_id}")


def base_url() -> str:
    """``YANDEX_AUDIENCES_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("YANDEX_AUDIENCES_BASE_URL", DEFAULT_BASE_URL)
