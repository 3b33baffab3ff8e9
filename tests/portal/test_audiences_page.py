"""The client's portal page of audiences: what each cabinet holds and who was held back."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audiences.models import SyncRun
from audiences.sync import audience_sync_now
from tests.audiences.conftest import FAST, build_world, make_audience, yandex_destination

pytestmark = pytest.mark.django_db


def test_portal_lists_audiences_with_their_last_runs(
    client, portal_owner_a, client_a, client_b, yandex_stub, django_user_model
):
    world = build_world(client_a, 120)
    audience = make_audience(world, yandex_destination(client_a))
    run = audience_sync_now(audience, source="test", http_options=FAST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    other = build_world(client_b, 110)
    make_audience(other, yandex_destination(client_b), name="Чужая аудитория")

    client.force_login(portal_owner_a)
    response = client.get(reverse("portal:audiences", args=[client_a.slug]))

    assert response.status_code == 200
    page = response.content.decode()
    assert audience.name in page
    assert "Яндекс Аудитории" in page
    assert "Чужая аудитория" not in page
    [shown] = response.context["audiences"]
    assert [r.pk for r in shown.recent_runs] == [run.pk]
    # The run's buckets: 120 members, 10 without consent, 5 suppressed, 105 exported.
    for figure in ("<td class=\"num\">120</td>", "<td class=\"num\">10</td>",
                   "<td class=\"num\">5</td>", "<td class=\"num\">105</td>"):  # fmt: skip
        assert figure in page, figure
    assert not response.context["running"]
    assert "Аудитории в рекламных кабинетах" in page  # Russian by default
