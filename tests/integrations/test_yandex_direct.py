"""The Yandex Direct client against its loopback stub: auth, Client-Login, points (Units),
error 152, report polling, per-item results of bid modifiers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from integrations.yandex_direct import (
    DirectError,
    DirectReportNotReady,
    DirectUnitsExhausted,
    Units,
    YandexDirectClient,
    add_chunks,
    report_rows,
    units_cost,
)
from tests.stubs.fixtures import FAST_HTTP


def _client(stub, *, token=None, login=None, sleeps=None) -> YandexDirectClient:
    return YandexDirectClient(
        base_url=stub.base_url,
        token=token or stub.credentials["token"],
        login=stub.login if login is None else login,
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
        **FAST_HTTP,
    )


def test_units_header_parsed():
    assert Units.parse("10/20828/64000") == Units(10, 20828, 64000)
    assert Units.parse("") is None
    assert Units.parse("a/b/c") is None


def test_wrong_token_and_wrong_login_are_refused(direct_stub):
    with _client(direct_stub, token="wrong") as client, pytest.raises(DirectError) as exc:
        client.retargeting_lists()
    assert exc.value.code == "53"
    with _client(direct_stub, login="someone-else") as client, pytest.raises(DirectError) as exc:
        client.retargeting_lists()
    assert exc.value.code == "513"
    with _client(direct_stub, login="") as client, pytest.raises(DirectError):
        client.retargeting_lists()


def test_headers_and_units_recorded(direct_stub):
    direct_stub.add_campaigns(1)
    with _client(direct_stub) as client:
        assert client.http.client.headers["Authorization"] == "Bearer test-direct-token"
        assert client.http.client.headers["Accept-Language"] == "ru"
        assert client.bid_modifiers([1]) == []
        cost = units_cost("bidmodifiers", "get")
        assert client.units == Units(cost, 64_000 - cost, 64_000)
        assert client.units_log[-1][0] == "bidmodifiers.get"


def test_units_exhausted_is_152_raised_once_not_looped(direct_stub):
    direct_stub.add_campaigns(1)
    direct_stub.set_units(5)
    with _client(direct_stub) as client, pytest.raises(DirectUnitsExhausted) as exc:
        client.bid_modifiers([1])
    assert exc.value.code == "152"
    assert direct_stub.calls("bidmodifiers") == 1  # one request, no retry loop
    # The client knows before the next call that it cannot pay it.
    with _client(direct_stub) as client:
        direct_stub.set_units(1000)
        client.bid_modifiers([1])
        client.units = Units(0, units_cost("bidmodifiers", "set", 5) - 1, 64_000)
        assert not client.can_afford("bidmodifiers", "set", 5)
        assert client.can_afford("bidmodifiers", "set", 4)


def test_report_polls_201_then_200_and_parses_tsv(direct_stub):
    direct_stub.add_stats(
        "2026-12-01", 11, name="Бренд", impressions=1000, clicks=50, cost="1234.56"
    )
    direct_stub.add_stats("2026-12-02", 11, name="Бренд", impressions=10, clicks=0, cost="0")
    direct_stub.add_stats("2026-12-05", 11, name="Бренд", impressions=1, clicks=1, cost="9")
    sleeps: list[float] = []
    direct_stub.retry_in = 3
    with _client(direct_stub, sleeps=sleeps) as client:
        tsv = client.report_tsv(
            date_from=date(2026, 12, 1), date_to=date(2026, 12, 2), name="spend-test"
        )
    assert [e["status"] for e in direct_stub.requests] == [201, 200]
    assert sleeps == [3.0]
    rows = report_rows(tsv)
    assert rows == [
        {"day": date(2026, 12, 1), "campaign_id": "11", "campaign_name": "Бренд",
         "impressions": 1000, "clicks": 50, "cost": Decimal("1234.56")},
        {"day": date(2026, 12, 2), "campaign_id": "11", "campaign_name": "Бренд",
         "impressions": 10, "clicks": 0, "cost": Decimal("0.00")},
    ]  # fmt: skip


def test_report_micros_converted():
    tsv = (
        "Date\tCampaignId\tCampaignName\tImpressions\tClicks\tCost\n"
        "2026-12-01\t7\tX\t5\t2\t1500000\n"
    )
    assert report_rows(tsv, money_in_micros=True)[0]["cost"] == Decimal("1.50")


def test_report_polls_are_bounded(direct_stub):
    direct_stub.report_polls = 100
    with _client(direct_stub) as client, pytest.raises(DirectReportNotReady):
        client.report_tsv(
            date_from=date(2026, 12, 1), date_to=date(2026, 12, 1), name="r", max_polls=3
        )
    assert direct_stub.calls("reports") == 4


def test_per_item_errors_out_of_range_refused_others_applied(direct_stub):
    direct_stub.add_campaigns(1, 2)
    direct_stub.add_segments(501, 502)
    with _client(direct_stub) as client:
        created = client.retargeting_lists_add(
            [
                {"Type": "AUDIENCE", "Name": f"seg {s}",
                 "Rules": [{"Operator": "ALL", "Arguments": [{"ExternalId": s}]}]}
                for s in (501, 502, 999)
            ]
        )  # fmt: skip
        assert [r.ok for r in created] == [True, True, False]
        list_a, list_b = created[0].id, created[1].id
        results = client.bid_modifiers_add([(1, list_a, 200), (1, list_b, 1500), (2, list_b, 0)])
        assert [r.ok for r in results] == [True, False, True]
        assert "1300" in results[1].errors[0]
        state = direct_stub.modifiers_state()
        assert sorted(state.values()) == [(1, list_a, 200), (2, list_b, 0)]
        got = client.bid_modifiers([1, 2], levels=["CAMPAIGN"])
        assert {(m["CampaignId"], m["RetargetingConditionId"], m["BidModifier"]) for m in got} == {
            (1, list_a, 200),
            (2, list_b, 0),
        }
        first = results[0].id
        set_results = client.bid_modifiers_set([(first, 1301), (results[2].id, 50), (424242, 10)])
        assert [r.ok for r in set_results] == [False, True, False]
        assert direct_stub.modifiers_state()[first][2] == 200
        assert direct_stub.modifiers_state()[results[2].id][2] == 50
        deleted = client.bid_modifiers_delete([first])
        assert deleted[0].ok
        assert first not in direct_stub.modifiers_state()


def test_stub_refuses_oversized_calls(direct_stub):
    direct_stub.add_campaigns(1)
    with _client(direct_stub) as client:
        with pytest.raises(ValueError, match="1000"):
            client.bid_modifiers_set([(i, 100) for i in range(1001)])
        # Past the client's own guard, the stub refuses the call itself.
        too_many = [{"Id": i, "BidModifier": 100} for i in range(1001)]
        with pytest.raises(DirectError) as exc:
            client.call("bidmodifiers", "set", {"BidModifiers": too_many})
        assert exc.value.code == "9300"
        lists = [direct_stub.seed_list(1000 + i) for i in range(101)]
        with pytest.raises(DirectError) as exc:
            client.bid_modifiers_add([(1, lid, 100) for lid in lists])
        assert exc.value.code == "9300"
        assert direct_stub.modifiers_state() == {}


def test_add_chunks_respect_per_campaign_and_call_limits():
    items = [(1, i, 100) for i in range(250)] + [(2, i, 100) for i in range(5)]
    batches = list(add_chunks(items))
    assert [len(b) for b in batches] == [100, 100, 55]
    assert all(sum(1 for i in b if i[0] == 1) <= 100 for b in batches)
    assert sum(len(b) for b in batches) == 255


def test_report_error_is_400_with_direct_error_body(direct_stub):
    with _client(direct_stub, token="wrong") as client, pytest.raises(DirectError) as exc:
        client.report_tsv(date_from=date(2026, 12, 1), date_to=date(2026, 12, 1), name="r")
    assert (exc.value.code, exc.value.status) == ("53", 400)
    assert direct_stub.calls("reports") == 1  # a 4xx is not retried
