"""VK Ads / myTarget API client (https://ads.vk.com/api/, https://target.my.com/api/).

Facts in ../shared/reference/ad-platforms.md: client-credentials tokens (at most 5 live per
client, so one is cached on the destination, reused and refreshed: :class:`VkTokenCache`);
``Authorization: Bearer``; users lists uploaded as files of one value per line with ``type``
(emails, phones) and, for changes, ``base=N`` (add to list N) or ``base=-N`` (remove from it);
remarketing segments reference lists with positive (target) or negative (exclude) relations.
Errors: ``{"error": {"code", "message", "fields"}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from django.db import transaction
from django.utils import timezone

from ..crypto import secret_decrypt, secret_encrypt
from .http import PlatformError, PlatformHttp

DEFAULT_BASE_URLS = {"vk_ads": "https://ads.vk.com/api/", "mytarget": "https://target.my.com/api/"}
MIN_LIST_LINES = 2000
MIN_DIFF_LINES = 25
LIST_TYPES = {1: "emails", 2: "phones"}
TOKEN_MARGIN = timedelta(minutes=5)


def vk_error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return "http_error", f"HTTP {response.status_code}: {response.text[:300]}"
    if not isinstance(error, dict):
        return "error", str(error)
    code = str(error.get("code", response.status_code))
    parts = [error.get("message") or code]
    for field, problems in (error.get("fields") or {}).items():
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
    return code, "; ".join(str(p) for p in parts)


class VkTokenCache:
    """The destination's one access token: reused while valid, refreshed when it expires, a new
    one minted only when there is none (or the refresh token is dead). Minting happens under a
    row lock so two workers never mint two tokens at once."""

    def __init__(self, destination: Any, http_factory: Callable[[], PlatformHttp]) -> None:
        self.destination = destination
        self.http_factory = http_factory

    def _credentials(self) -> dict:
        return secret_decrypt(self.destination.credentials_encrypted)

    def token(self) -> str:
        destination = self.destination
        now = timezone.now()
        if (
            destination.token_encrypted
            and destination.token_expires_at
            and (destination.token_expires_at - TOKEN_MARGIN > now)
        ):
            return secret_decrypt(destination.token_encrypted)["access_token"]
        with transaction.atomic():
            locked = (
                type(destination)
                .objects.for_client(destination.client_id)
                .select_for_update()
                .get(pk=destination.pk)
            )
            if (
                locked.token_encrypted
                and locked.token_expires_at
                and (locked.token_expires_at - TOKEN_MARGIN > now)
            ):
                destination.token_encrypted = locked.token_encrypted
                destination.token_expires_at = locked.token_expires_at
                return secret_decrypt(locked.token_encrypted)["access_token"]
            stored = secret_decrypt(locked.token_encrypted) if locked.token_encrypted else {}
            reply = self._obtain(stored.get("refresh_token", ""))
            destination.token_encrypted = secret_encrypt(
                {
                    "access_token": reply["access_token"],
                    "refresh_token": reply.get("refresh_token") or stored.get("refresh_token", ""),
                }
            )
            destination.token_expires_at = now + timedelta(
                seconds=int(reply.get("expires_in", 3600))
            )
            type(destination).objects.for_client(destination.client_id).filter(
                pk=destination.pk
            ).update(
                token_encrypted=destination.token_encrypted,
                token_expires_at=destination.token_expires_at,
            )
        return reply["access_token"]

    def invalidate(self) -> None:
        """The platform said the token is no longer valid: refresh on the next call."""
        self.destination.token_expires_at = None
        type(self.destination).objects.for_client(self.destination.client_id).filter(
            pk=self.destination.pk
        ).update(token_expires_at=None)

    def _obtain(self, refresh_token: str) -> dict:
        credentials = self._credentials()
        base = {
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
        }
        with self.http_factory() as http:
            if refresh_token:
                try:
                    return http.request(
                        "POST",
                        "v2/oauth2/token.json",
                        data={
                            **base,
                            "grant_type": "refresh_token",
                            "refresh_token": refresh_token,
                        },
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


class VkAdsClient:
    def __init__(
        self, *, base_url: str, token_cache: VkTokenCache | None = None, **http_options: Any
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
