"""The loopback ad-platform stubs check requests the way the real APIs do, so the platform's
clients can be trusted when they pass against them. Plain `requests` is the client here."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.stubs import VkAdsStub, YandexAudiencesStub

YA_AUTH = {"Authorization": "OAuth test-yandex-token"}
VK_CREDENTIALS = {"client_id": "test-client", "client_secret": "test-secret"}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()  # noqa: S324 - the platform's format


def emails(count: int, start: int = 0) -> list[str]:
    return [f"user{i}@example.com" for i in range(start, start + count)]


def crm_csv(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def lines(values: list[str]) -> bytes:
    return ("\n".join(values) + "\n").encode()


def ya_error(response: requests.Response) -> tuple[str, str]:
    body = response.json()
    assert body["code"] == response.status_code
    return body["errors"][0]["error_type"], body["errors"][0]["message"]


def vk_error(response: requests.Response) -> dict:
    return response.json()["error"]


# --- Yandex Audiences -----------------------------------------------------------------------


@pytest.fixture
def yandex() -> Iterator[YandexAudiencesStub]:
    with YandexAudiencesStub(quota_per_minute=10_000) as stub:
        yield stub


def ya_upload(
    stub: YandexAudiencesStub, content: bytes, filename: str = "clients.csv", field: str = "file"
) -> requests.Response:
    return requests.post(
        stub.base_url + "segments/upload_csv_file",
        headers=YA_AUTH,
        files={field: (filename, content, "text/csv")},
        timeout=30,
    )


def ya_confirm(
    stub: YandexAudiencesStub,
    segment_id: int,
    *,
    hashed: bool = True,
    alg: str | None = "SHA256",
    name: str = "clients",
    params: dict | None = None,
) -> requests.Response:
    segment = {"id": segment_id, "name": name, "hashed": hashed, "content_type": "crm"}
    if alg:
        segment["hashing_alg"] = alg
    return requests.post(
        stub.base_url + f"segment/{segment_id}/confirm",
        headers=YA_AUTH,
        json={"segment": segment},
        params=params,
        timeout=30,
    )


def ya_modify(
    stub: YandexAudiencesStub, segment_id: int, kind: str, content: bytes
) -> requests.Response:
    return requests.post(
        stub.base_url + f"segment/{segment_id}/modify_data",
        headers=YA_AUTH,
        params={"modification_type": kind},
        files={"file": ("data.csv", content, "text/csv")},
        timeout=30,
    )


def processed_segment(stub: YandexAudiencesStub, values: list[str]) -> int:
    response = ya_upload(stub, crm_csv("email", [sha256(v) for v in values]))
    segment_id = response.json()["segment"]["id"]
    assert ya_confirm(stub, segment_id).status_code == 200
    stub.process_all()
    return segment_id


def test_yandex_auth_requires_oauth_scheme_and_known_token(yandex):
    url = yandex.base_url + "segments"
    for headers in (
        {},
        {"Authorization": "Bearer test-yandex-token"},
        {"Authorization": "OAuth x"},
    ):
        response = requests.get(url, headers=headers, timeout=5)
        assert response.status_code == 401
        assert ya_error(response)[0] == "unauthorized"
    response = requests.get(url, headers=YA_AUTH, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"segments": []}
    assert len(response.headers["X-Request-Id"]) == 32
    assert [entry["status"] for entry in yandex.requests] == [401, 401, 401, 200]
    assert yandex.calls("/segments") == 4


def test_yandex_upload_checks_field_name_and_header(yandex):
    rows = [sha256(v) for v in emails(3)]
    response = ya_upload(yandex, crm_csv("email", rows), field="data")
    assert response.status_code == 400
    assert ya_error(response)[0] == "missing_parameter"
    assert response.json()["errors"][0]["location"] == "file"

    response = ya_upload(yandex, crm_csv("email,name", [f"{r},Ann" for r in rows]))
    assert response.status_code == 400
    assert ya_error(response) == (
        "invalid_parameter",
        "unknown column 'name': allowed columns are email, phone, external_id",
    )
    response = ya_upload(yandex, crm_csv("external_id", ["1", "2"]))
    assert response.status_code == 400
    assert "email or a phone" in ya_error(response)[1]
    response = ya_upload(yandex, crm_csv("email,phone,external_id", [f"{rows[0]},,1", ",,2"]))
    assert response.status_code == 400
    assert ya_error(response)[1].startswith("line 3:")
    assert yandex.upload_count == 0

    response = ya_upload(yandex, crm_csv("external_id,email", [f"7,{r}" for r in rows]))
    assert response.status_code == 200
    segment = response.json()["segment"]
    assert segment["name"] == "clients"  # the file name without its extension
    assert segment["status"] == "uploaded"
    assert segment["hashed"] is False
    assert segment["item_quantity"] == 3
    assert yandex.upload_count == 1
    assert yandex.segment_values(segment["id"], "email") == set(rows)
    assert yandex.segment_columns(segment["id"]) == ["external_id", "email"]


def test_yandex_confirm_needs_100_rows_unless_check_size_false(yandex):
    segment_id = ya_upload(yandex, crm_csv("email", [sha256(v) for v in emails(99)])).json()[
        "segment"
    ]["id"]
    response = ya_confirm(yandex, segment_id)
    assert response.status_code == 400
    assert ya_error(response) == ("invalid_parameter", "segment size must be at least 100")
    response = ya_confirm(yandex, segment_id, params={"check_size": "false"})
    assert response.status_code == 200
    assert response.json()["segment"]["status"] == "is_processed"
    # 99 values cannot match 100 users.
    assert yandex.segment(segment_id)["status"] == "few_data"


def test_yandex_confirm_checks_sha256_format_and_refuses_md5(yandex):
    values = [sha256(v) for v in emails(120)]
    segment_id = ya_upload(yandex, crm_csv("email", values)).json()["segment"]["id"]
    response = ya_confirm(yandex, segment_id, alg="MD5")
    assert response.status_code == 400
    assert "MD5 uploads are no longer accepted" in ya_error(response)[1]
    response = ya_confirm(yandex, segment_id, hashed=False, alg=None)
    assert response.status_code == 400
    assert ya_error(response)[1].startswith("line 2: the email value is not an email")
    assert ya_confirm(yandex, segment_id + 99).status_code == 404
    wrong_id = requests.post(
        yandex.base_url + f"segment/{segment_id}/confirm",
        headers=YA_AUTH,
        json={"segment": {"id": 999, "name": "x", "hashed": True, "content_type": "crm"}},
        timeout=5,
    )
    assert ya_error(wrong_id) == ("invalid_parameter", "segment.id does not match the path")
    assert ya_confirm(yandex, segment_id).status_code == 200

    bad = list(values)
    bad[3] = bad[3].upper()  # line 5 of the file
    segment_id = ya_upload(yandex, crm_csv("email", bad)).json()["segment"]["id"]
    response = ya_confirm(yandex, segment_id)
    assert response.status_code == 400
    assert ya_error(response)[1].startswith("line 5: the email value is not a SHA-256 hash")

    plain = ya_upload(yandex, crm_csv("phone", [f"7999{i:07d}" for i in range(100)]))
    response = ya_confirm(yandex, plain.json()["segment"]["id"], hashed=False, alg=None)
    assert response.status_code == 200
    with_plus = ya_upload(yandex, crm_csv("phone", [f"+7999{i:07d}" for i in range(100)]))
    response = ya_confirm(yandex, with_plus.json()["segment"]["id"], hashed=False, alg=None)
    assert response.status_code == 400
    assert "line 2: the phone value" in ya_error(response)[1]


def test_yandex_status_advances_after_processing_delay():
    with YandexAudiencesStub(processing_delay=0.5, quota_per_minute=None) as stub:
        values = emails(300)
        segment_id = ya_upload(stub, crm_csv("email", [sha256(v) for v in values])).json()[
            "segment"
        ]["id"]
        assert stub.segment(segment_id)["status"] == "uploaded"
        more = crm_csv("email", [sha256("new@example.com")])
        response = ya_modify(stub, segment_id, "addition", more)
        assert response.status_code == 400
        assert ya_error(response) == ("query_error", "Segment is not processed yet")

        assert ya_confirm(stub, segment_id).json()["segment"]["status"] == "is_processed"
        response = ya_confirm(stub, segment_id)
        assert ya_error(response) == ("invalid_parameter", "segment already confirmed")
        assert ya_error(ya_modify(stub, segment_id, "addition", more))[0] == "query_error"

        time.sleep(0.6)
        listed = requests.get(stub.base_url + "segments", headers=YA_AUTH, timeout=5).json()
        segment = listed["segments"][0]
        assert segment["status"] == "processed"
        assert segment["valid_unique_quantity"] == 300
        assert 200 < segment["matched_quantity"] < 280  # ~80 % match

        response = ya_modify(stub, segment_id, "addition", more)
        assert response.json()["segment"]["status"] == "is_updated"
        assert ya_error(ya_modify(stub, segment_id, "addition", more))[0] == "query_error"
        stub.process_all()
        assert stub.segment(segment_id)["status"] == "processed"
        assert stub.segment(segment_id)["valid_unique_quantity"] == 301
        assert stub.modification_count(segment_id) == 1


def test_yandex_modify_data_addition_subtraction_replace(yandex):
    segment_id = processed_segment(yandex, emails(200))
    hashed = {sha256(v) for v in emails(200)}

    def modify(kind: str, values: list[str]) -> requests.Response:
        response = ya_modify(yandex, segment_id, kind, crm_csv("email", values))
        yandex.process_all()
        return response

    assert modify("addition", [sha256(v) for v in emails(10, 200)]).status_code == 200
    hashed |= {sha256(v) for v in emails(10, 200)}
    assert yandex.segment_values(segment_id, "email") == hashed
    assert modify("subtraction", [sha256(v) for v in emails(50)]).status_code == 200
    hashed -= {sha256(v) for v in emails(50)}
    assert yandex.segment_values(segment_id, "email") == hashed
    replacement = [sha256(v) for v in emails(150, 1000)]
    assert modify("replace", replacement).status_code == 200
    assert yandex.segment_values(segment_id, "email") == set(replacement)
    assert yandex.segment(segment_id)["valid_unique_quantity"] == 150
    assert yandex.modification_count(segment_id) == 3

    refused = [
        ya_modify(yandex, segment_id, "merge", crm_csv("email", replacement)),
        ya_modify(yandex, segment_id, "addition", crm_csv("phone", ["79990000000"])),
        ya_modify(yandex, segment_id, "addition", crm_csv("email", ["plain@example.com"])),
    ]
    assert [r.status_code for r in refused] == [400, 400, 400]
    assert "modification_type" in ya_error(refused[0])[1]
    assert "columns must be the same" in ya_error(refused[1])[1]
    assert "not a SHA-256 hash" in ya_error(refused[2])[1]
    assert yandex.modification_count(segment_id) == 3


def test_yandex_few_data_when_under_100_matched():
    with YandexAudiencesStub(match_percent=0, quota_per_minute=None) as stub:
        segment_id = processed_segment(stub, emails(150))
        segment = stub.segment(segment_id)
        assert segment["status"] == "few_data"
        assert segment["matched_quantity"] == 0
        response = ya_modify(stub, segment_id, "addition", crm_csv("email", [sha256("a@b.ru")]))
        assert ya_error(response) == ("query_error", "Segment is not processed yet")


def test_yandex_lookalike_validation(yandex):
    source = processed_segment(yandex, emails(200))
    unprocessed = ya_upload(yandex, crm_csv("email", [sha256(v) for v in emails(200)]))

    def lookalike(link, value) -> requests.Response:
        body = {
            "segment": {
                "name": "similar",
                "lookalike_link": link,
                "lookalike_value": value,
                "maintain_device_distribution": True,
                "maintain_geo_distribution": True,
            }
        }
        return requests.post(
            yandex.base_url + "segments/create_lookalike", headers=YA_AUTH, json=body, timeout=5
        )

    for link, value in [(source, 0), (source, 6), (source, "3"), (999, 3)]:
        response = lookalike(link, value)
        assert response.status_code == 400
        assert ya_error(response)[0] == "invalid_parameter"
    response = lookalike(unprocessed.json()["segment"]["id"], 3)
    assert response.status_code == 400
    assert "processed" in ya_error(response)[1]

    response = lookalike(source, 3)
    assert response.status_code == 200
    segment = response.json()["segment"]
    assert segment["type"] == "lookalike"
    assert segment["lookalike_link"] == source
    assert segment["lookalike_value"] == 3
    assert segment["status"] == "is_processed"
    yandex.process_all()
    assert yandex.segment(segment["id"])["status"] == "processed"


def test_yandex_rename_and_delete(yandex):
    segment_id = processed_segment(yandex, emails(100))
    url = yandex.base_url + f"segment/{segment_id}"
    response = requests.put(url, headers=YA_AUTH, json={"segment": {"name": "VIP"}}, timeout=5)
    assert response.json()["segment"]["name"] == "VIP"
    assert [s["id"] for s in yandex.segments_named("VIP")] == [segment_id]
    assert requests.delete(url, headers=YA_AUTH, timeout=5).json() == {"success": True}
    assert requests.delete(url, headers=YA_AUTH, timeout=5).status_code == 404
    assert yandex.segments_named("VIP") == []


def test_yandex_quota_answers_429_with_retry_after():
    with YandexAudiencesStub(quota_per_minute=2) as stub:
        content = crm_csv("email", [sha256("a@b.ru")])
        assert [ya_upload(stub, content).status_code for _ in range(2)] == [200, 200]
        response = ya_upload(stub, content)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert ya_error(response)[0] == "quota"
        # Listing is not a create/modify call.
        assert requests.get(stub.base_url + "segments", headers=YA_AUTH, timeout=5).ok


# --- VK Ads / myTarget ----------------------------------------------------------------------


@pytest.fixture
def vk() -> Iterator[VkAdsStub]:
    with VkAdsStub() as stub:
        yield stub


def vk_token(stub: VkAdsStub, **form: str) -> requests.Response:
    data = {"grant_type": "client_credentials", **VK_CREDENTIALS, **form}
    return requests.post(stub.base_url + "v2/oauth2/token.json", data=data, timeout=5)


def bearer(stub: VkAdsStub) -> dict[str, str]:
    return {"Authorization": f"Bearer {vk_token(stub).json()['access_token']}"}


def vk_upload(
    stub: VkAdsStub,
    headers: dict[str, str],
    content: bytes,
    *,
    name: str = "buyers",
    list_type: str = "emails",
    base: int | None = None,
    timeout: float = 30,
) -> requests.Response:
    data = {"name": name, "type": list_type}
    if base is not None:
        data["base"] = str(base)
    return requests.post(
        stub.base_url + "v3/remarketing/users_lists.json",
        headers=headers,
        data=data,
        files={"file": ("list.txt", content, "text/plain")},
        timeout=timeout,
    )


def test_vk_token_checks_credentials_and_calls_need_bearer(vk):
    assert vk_error(vk_token(vk, client_secret="wrong"))["code"] == "invalid_client"
    as_json = requests.post(
        vk.base_url + "v2/oauth2/token.json",
        json={"grant_type": "client_credentials", **VK_CREDENTIALS},
        timeout=5,
    )
    assert as_json.status_code == 400  # the token endpoint takes a form, not JSON
    token = vk_token(vk).json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 86400
    assert token["refresh_token"]

    url = vk.base_url + "v3/remarketing/users_lists.json"
    for headers in ({}, {"Authorization": f"OAuth {token['access_token']}"}):
        response = requests.get(url, headers=headers, timeout=5)
        assert response.status_code == 401
        assert vk_error(response)["code"] == "invalid_token"
    response = requests.get(
        url, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=5
    )
    assert response.json() == {"items": [], "count": 0, "offset": 0}
    for name in ("RPS", "Hourly", "Daily"):
        assert int(response.headers[f"X-RateLimit-{name}-Remaining"]) < int(
            response.headers[f"X-RateLimit-{name}-Limit"]
        )


def test_vk_at_most_five_live_tokens_and_refresh_does_not_add_one(vk):
    tokens = [vk_token(vk).json() for _ in range(5)]
    response = vk_token(vk)
    assert response.status_code == 403
    assert vk_error(response)["code"] == "token_limit_exceeded"
    assert vk.live_tokens("test-client") == 5

    refreshed = vk_token(vk, grant_type="refresh_token", refresh_token=tokens[0]["refresh_token"])
    assert refreshed.status_code == 200
    assert vk.live_tokens("test-client") == 5
    assert vk.tokens_issued == 6
    url = vk.base_url + "v2/remarketing/segments.json"
    old = {"Authorization": f"Bearer {tokens[0]['access_token']}"}
    new = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert requests.get(url, headers=old, timeout=5).status_code == 401
    assert requests.get(url, headers=new, timeout=5).status_code == 200


def test_vk_expired_token_is_refused_and_refresh_works(vk):
    token = vk_token(vk).json()
    url = vk.base_url + "v3/remarketing/users_lists.json"
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(url, headers=headers, timeout=5).status_code == 200
    vk.expire_tokens()
    response = requests.get(url, headers=headers, timeout=5)
    assert response.status_code == 401
    assert "expired" in vk_error(response)["message"]
    assert vk.live_tokens("test-client") == 0
    refreshed = vk_token(vk, grant_type="refresh_token", refresh_token=token["refresh_token"])
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert requests.get(url, headers=headers, timeout=5).status_code == 200


def test_vk_users_list_line_count_limits(vk):
    auth = bearer(vk)
    response = vk_upload(vk, auth, lines(emails(1999)))
    assert response.status_code == 400
    error = vk_error(response)
    assert error["code"] == "validation_failed"
    assert error["fields"]["file"][0]["code"] == "not_enough_ids"

    response = vk_upload(vk, auth, lines(["id", *[md5(v) for v in emails(2000)]]))
    assert response.status_code == 200
    users_list = response.json()
    assert users_list["status"] == "receiving"
    assert users_list["entries_count"] == 2000
    assert "base" not in users_list
    vk.process_all()
    fetched = requests.get(
        vk.base_url + f"v3/remarketing/users_lists/{users_list['id']}.json", headers=auth, timeout=5
    )
    assert fetched.json()["status"] == "ready"
    assert vk.list_values(users_list["id"]) == {md5(v) for v in emails(2000)}
    assert vk.upload_count == 1


def test_vk_users_list_reports_bad_lines_with_numbers(vk):
    auth = bearer(vk)
    values = emails(2500)
    values[2] = "User2@Example.com"  # line 3: not lowercase
    values[9] = "no-at-sign.example.com"  # line 10
    response = vk_upload(vk, auth, lines(values))
    assert response.status_code == 400
    assert vk_error(response)["fields"]["file"] == [
        {"line_number": 3, "line": "User2@Example.com", "code": "invalid_email"},
        {"line_number": 10, "line": "no-at-sign.example.com", "code": "invalid_email"},
    ]

    phones = [f"7901{i:07d}" for i in range(2500)]
    phones[0] = "+79011234567"
    phones[4] = md5("79011234567")  # mixed with plain values
    bad = vk_error(vk_upload(vk, auth, lines(phones), list_type="phones"))["fields"]["file"]
    assert [(e["line_number"], e["code"]) for e in bad] == [
        (1, "invalid_phone"),
        (5, "invalid_md5"),
    ]

    hashed = [md5(v) for v in emails(2500)]
    hashed[6] = "plain@example.com"
    bad = vk_error(vk_upload(vk, auth, lines(hashed)))["fields"]["file"]
    assert [(e["line_number"], e["code"]) for e in bad] == [(7, "invalid_md5")]

    many_bad = lines([f"bad{i}" for i in range(3000)])
    assert len(vk_error(vk_upload(vk, auth, many_bad))["fields"]["file"]) == 10
    assert vk.upload_count == 0


def test_vk_users_list_checks_fields(vk):
    auth = bearer(vk)
    response = vk_upload(vk, auth, lines(emails(2000)), list_type="vk")
    assert vk_error(response)["fields"]["type"][0]["code"] == "invalid_choice"
    response = requests.post(
        vk.base_url + "v3/remarketing/users_lists.json",
        headers=auth,
        data={"type": "emails"},
        files={"data": ("list.txt", lines(emails(2000)))},
        timeout=5,
    )
    assert set(vk_error(response)["fields"]) == {"file", "name"}


def test_vk_differential_lists_add_and_remove(vk):
    auth = bearer(vk)
    base_id = vk_upload(vk, auth, lines(emails(2000))).json()["id"]
    response = vk_upload(vk, auth, lines(emails(24, 5000)), base=base_id)
    assert vk_error(response)["fields"]["file"][0]["code"] == "not_enough_ids"

    added = vk_upload(vk, auth, lines(emails(25, 5000)), name="buyers +", base=base_id)
    assert added.status_code == 200
    assert added.json()["base"] == base_id
    assert added.json()["id"] != base_id
    assert vk.list_values(base_id) == set(emails(2000)) | set(emails(25, 5000))
    removed = vk_upload(vk, auth, lines(emails(30)), base=-base_id)
    assert removed.json()["base"] == -base_id
    assert vk.list_values(base_id) == set(emails(1970, 30)) | set(emails(25, 5000))
    assert vk.users_list(base_id)["entries_count"] == 1995
    assert [item["id"] for item in vk.base_lists()] == [base_id]
    assert [item["id"] for item in vk.lists_named("buyers +")] == [added.json()["id"]]

    phones = lines([f"7901{i:07d}" for i in range(30)])
    response = vk_upload(vk, auth, phones, list_type="phones", base=base_id)
    assert vk_error(response)["fields"]["base"][0]["code"] == "type_mismatch"
    response = vk_upload(vk, auth, lines(emails(30)), base=added.json()["id"])
    assert vk_error(response)["fields"]["base"][0]["code"] == "not_base_list"
    assert vk_upload(vk, auth, lines(emails(30)), base=999).status_code == 404


def test_vk_users_list_paging_and_delete(vk):
    auth = bearer(vk)
    ids = [vk_upload(vk, auth, lines(emails(2000)), name=f"l{i}").json()["id"] for i in range(3)]
    url = vk.base_url + "v3/remarketing/users_lists.json"
    page = requests.get(url, headers=auth, params={"limit": 2, "offset": 1}, timeout=5).json()
    assert [item["id"] for item in page["items"]] == ids[1:]
    assert page["count"] == 3
    one = vk.base_url + f"v3/remarketing/users_lists/{ids[0]}.json"
    assert requests.delete(one, headers=auth, timeout=5).status_code == 204
    assert requests.get(one, headers=auth, timeout=5).status_code == 404
    assert requests.get(url, headers=auth, timeout=5).json()["count"] == 2


def test_vk_segment_relations_are_validated(vk):
    auth = bearer(vk)
    base_id = vk_upload(vk, auth, lines(emails(2000))).json()["id"]
    diff_id = vk_upload(vk, auth, lines(emails(25, 9000)), base=base_id).json()["id"]
    url = vk.base_url + "v2/remarketing/segments.json"
    bad = {
        "name": "",
        "pass_condition": "1",
        "relations": [
            {"object_type": "users_list", "params": {"source_id": base_id, "type": "positive"}},
            {"object_type": "remarketing_users_list", "params": {"source_id": 999, "type": "x"}},
            {"object_type": "remarketing_users_list", "params": {"source_id": diff_id}},
        ],
    }
    response = requests.post(url, headers=auth, json=bad, timeout=5)
    assert response.status_code == 400
    assert set(vk_error(response)["fields"]) == {
        "name",
        "pass_condition",
        "relations.0.object_type",
        "relations.1.params.source_id",
        "relations.1.params.type",
        "relations.2.params.source_id",
        "relations.2.params.type",
    }
    empty = requests.post(
        url, headers=auth, json={"name": "x", "pass_condition": 1, "relations": []}, timeout=5
    )
    assert set(vk_error(empty)["fields"]) == {"relations"}

    good = {
        "name": "buyers",
        "pass_condition": 1,
        "relations": [
            {
                "object_type": "remarketing_users_list",
                "params": {"source_id": base_id, "type": "positive"},
            }
        ],
    }
    response = requests.post(url, headers=auth, json=good, timeout=5)
    assert response.status_code == 200
    assert response.json()["relations"] == good["relations"]
    listed = requests.get(url, headers=auth, timeout=5).json()
    assert listed["count"] == 1
    assert vk.segments()[0]["id"] == response.json()["id"]


def test_vk_rate_limit_and_quota_answer_429():
    with VkAdsStub(rps_limit=3) as stub:
        auth = bearer(stub)
        url = stub.base_url + "v2/remarketing/segments.json"
        statuses = [requests.get(url, headers=auth, timeout=5).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = requests.get(url, headers=auth, timeout=5)
        assert vk_error(response)["code"] == "too_many_requests"
        assert response.headers["Retry-After"] == "1"
        assert response.headers["X-RateLimit-RPS-Remaining"] == "0"
    with VkAdsStub(quota_per_minute=1) as stub:
        auth = bearer(stub)
        assert vk_upload(stub, auth, lines(emails(2000))).status_code == 200
        response = vk_upload(stub, auth, lines(emails(2000)))
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"


# --- faults ---------------------------------------------------------------------------------


def test_fault_rate_one_faults_every_call_in_the_platform_format():
    with YandexAudiencesStub(fault_rate=1.0, fault_kinds=("429", "503"), fault_seed=1) as stub:
        responses = [
            requests.get(stub.base_url + "segments", headers=YA_AUTH, timeout=5) for _ in range(8)
        ]
        assert {r.status_code for r in responses} == {429, 503}
        for response in responses:
            assert (
                ya_error(response)[0] == {429: "quota", 503: "backend_error"}[response.status_code]
            )
        assert all(entry["fault"] for entry in stub.requests)
    with VkAdsStub(fault_kinds=("503",)) as stub:
        auth = bearer(stub)
        stub.fault_rate = 1.0
        url = stub.base_url + "v2/remarketing/segments.json"
        response = requests.get(url, headers=auth, timeout=5)
        assert response.status_code == 503
        assert vk_error(response)["code"] == "service_unavailable"
        assert "X-RateLimit-RPS-Limit" in response.headers


def test_timeout_fault_can_do_the_work_and_lose_the_reply():
    options = {"fault_kinds": ("timeout",), "timeout_sleep": 2.0, "timeout_processes": 1.0}
    with YandexAudiencesStub(fault_rate=1.0, quota_per_minute=None, **options) as stub:
        content = crm_csv("email", [sha256("a@b.ru")])
        with pytest.raises(requests.Timeout):
            requests.post(
                stub.base_url + "segments/upload_csv_file",
                headers=YA_AUTH,
                files={"file": ("lost.csv", content)},
                timeout=0.3,
            )
        # The segment exists although the client never saw the reply: a blind retry duplicates.
        assert stub.upload_count == 1
        assert len(stub.segments_named("lost")) == 1

        stub.timeout_processes = 0.0
        with pytest.raises(requests.Timeout):
            requests.post(
                stub.base_url + "segments/upload_csv_file",
                headers=YA_AUTH,
                files={"file": ("lost.csv", content)},
                timeout=0.3,
            )
        assert stub.upload_count == 1  # this time the work was not done

    with VkAdsStub(**options) as stub:
        auth = bearer(stub)
        stub.fault_rate = 1.0
        with pytest.raises(requests.Timeout):
            vk_upload(stub, auth, lines(emails(2000)), name="lost", timeout=0.3)
        assert len(stub.lists_named("lost")) == 1


# --- running and scale ----------------------------------------------------------------------


def test_stubs_run_as_a_process_with_help():
    result = subprocess.run(
        [sys.executable, "-m", "tests.stubs", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert "--yandex-port" in result.stdout
    assert "--vk-client-secret" in result.stdout


def test_one_million_line_users_list_upload(vk, tmp_path):
    path = tmp_path / "million.txt"
    with path.open("w") as file:
        file.writelines(f"{md5(f'user{i}@example.com')}\n" for i in range(1_000_000))
    auth = bearer(vk)
    started = time.perf_counter()
    with path.open("rb") as file:
        response = requests.post(
            vk.base_url + "v3/remarketing/users_lists.json",
            headers=auth,
            data={"name": "million", "type": "emails"},
            files={"file": ("million.txt", file, "text/plain")},
            timeout=120,
        )
    elapsed = time.perf_counter() - started
    size_mb = path.stat().st_size / 1e6
    print(f"\n1,000,000-line users list ({size_mb:.0f} MB) accepted in {elapsed:.2f} s")
    assert response.status_code == 200, response.text[:500]
    assert response.json()["entries_count"] == 1_000_000
    assert len(vk.list_values(response.json()["id"])) == 1_000_000
