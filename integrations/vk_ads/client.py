"""VK Ads / myTarget API client (https://ads.vk.com/api/, https://target.my.com/api/).

Facts in ../shared/reference/ad-platforms.md: client-credentials tokens (at most 5 live per
client, so the caller keeps one, reuses and refreshes it: :class:`TokenProvider`);
``Authorization: Bearer``; users lists uploaded as files of one value per line with ``type``
(emails, phones) and, for changes, ``base=N`` (add to list N) or ``base=-N`` (remove from it);
remarketing segments reference lists with positive (target) or negative (exclude) relations.
Errors: ``{"error": {"code", "message", "fields"}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import httpx

from ..http import (
    MAX_MESSAGE_CHARS,
    PlatformError,
    PlatformHttp,
    base_url_setting,
    error_text,
    unparsed_error,
)

DEFAULT_BASE_URL = "https://ads.vk.com/api/"
MIN_LIST_LINES = 2000
MIN_DIFF_LINES = 25
LIST_TYPES = {1: "emails", 2: "phones"}


def vk_error(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` from the VK Ads / myTarget error body, with the fields at fault;
    any other body is ``HTTP <status>`` (:func:`~integrations.http.unparsed_error`), never its
    text."""
    try:
        body = response.json()
    except ValueError:
        return unparsed_error(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and error_text(error):
        # OAuth replies: {"error": "invalid_client", "error_description": "..."}
        description = error_text(body.get("error_description"))
        return error_text(error), description or error_text(error)
    if not isinstance(error, dict) or not error:
        return unparsed_error(response)
    code = error_text(str(error.get("code", response.status_code)))
    parts = [error_text(error.get("message")) or code]
    fields = error.get("fields")
    for field, problems in fields.items() if isinstance(fields, dict) else ():
        if isinstance(problems, list):
            for problem in problems[:5]:
                if isinstance(problem, dict) and "line_number" in problem:
                    parts.append(
                        f"{field}, строка {problem['line_number']}: {problem.get('code')}"
                        f" ({problem.get('line', '')!s:.60})"
                    )
                else:
                    parts.append(f"{field}: {problem}")
        else:
            parts.append(f"{field}: {problems}")
    return code, "; ".join(str(p) for p in parts)[:MAX_MESSAGE_CHARS]


def obtain_token(http: PlatformHttp, credentials: dict, refresh_token: str = "") -> dict:
    """A token reply (``access_token``, ``refresh_token``, ``expires_in``): the refresh token
    first, client credentials (or agency client credentials) when it is refused or absent."""
    base = {
        "client_id": credentials["client_id"],
        "client_secret": credentials["client_secret"],
    }
    if refresh_token:
        try:
            return http.request(
                "POST",
                "v2/oauth2/token.json",
                data={**base, "grant_type": "refresh_token", "refresh_token": refresh_token},
            ).json()
        except PlatformError as exc:
            if exc.status not in (400, 401):
                raise
    form = {**base, "grant_type": "client_credentials"}
    if credentials.get("agency_client_name"):
        form.update(
            grant_type="agency_client_credentials",
            agency_client_name=credentials["agency_client_name"],
        )
    return http.request("POST", "v2/oauth2/token.json", data=form).json()


class TokenProvider(Protocol):
    """Where the caller keeps the one live token (at most 5 per client on the platform)."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class VkAdsClient:
    def __init__(
        self, *, base_url: str, token_cache: TokenProvider | None = None, **http_options: Any
    ):
        self.http = PlatformHttp(base_url, error_parser=vk_error, **http_options)
        self.tokens = token_cache

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call with the cached token; one retry with a fresh token after a 401."""
        for attempt in range(2):
            try:
                return self.http.request(
                    method,
                    path,
                    auth=lambda: {"Authorization": f"Bearer {self.tokens.token()}"},
                    **kwargs,
                )
            except PlatformError as exc:
                if exc.status != 401 or attempt:
                    raise
                self.tokens.invalidate()
        raise AssertionError("unreachable")

    def users_lists(self) -> list[dict]:
        items: list[dict] = []
        offset = 0
        while True:
            page = self._call(
                "GET", "v3/remarketing/users_lists.json", params={"limit": 200, "offset": offset}
            ).json()
            batch = page.get("items", [])
            items.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("count", offset)):
                return items

    def users_list(self, list_id: int) -> dict | None:
        try:
            return self._call("GET", f"v3/remarketing/users_lists/{list_id}.json").json()
        except PlatformError as exc:
            if exc.status == 404:
                return None
            raise

    def lists_named(self, name: str) -> list[dict]:
        return [item for item in self.users_lists() if item.get("name") == name]

    def upload_users_list(
        self, path: Path, *, name: str, list_type: str, base: int | None = None
    ) -> dict:
        data: dict[str, Any] = {"name": name, "type": list_type}
        if base is not None:
            data["base"] = str(base)
        return self._call(
            "POST",
            "v3/remarketing/users_lists.json",
            creates=True,
            data=data,
            before_attempt=lambda: {"files": {"file": (path.name, path.open("rb"), "text/plain")}},
        ).json()

    def segments(self) -> list[dict]:
        return self._call("GET", "v2/remarketing/segments.json").json().get("items", [])

    def create_segment(self, *, name: str, relations: list[tuple[int, str]]) -> dict:
        body = {
            "name": name,
            "pass_condition": 1,
            "relations": [
                {
                    "object_type": "remarketing_users_list",
                    "params": {"source_id": source_id, "type": relation_type},
                }
                for source_id, relation_type in relations
            ],
        }
        return self._call("POST", "v2/remarketing/segments.json", json=body, creates=True).json()


def base_url() -> str:
    """``VK_ADS_BASE_URL`` from the environment, else the official host."""
    return base_url_setting("VK_ADS_BASE_URL", DEFAULT_BASE_URL)
