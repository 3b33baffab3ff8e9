"""agency.admin_base.access_client_by_id: the one staff look-up of a client by id, used by every
admin page that takes a client id in its URL or form. A missing client, another client, a
malformed id and a person without a staff role all get the same 404."""

from __future__ import annotations

import pytest
from django.http import Http404
from django.test import RequestFactory
from django.urls import reverse

from agency.admin_base import access_client_by_id

PAGES = [
    "admin:segments_scoringrun_analytics",
    "admin:audiences_audience_bidding",
    "admin:consent_compliance_checklist",
]


def _request(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_the_look_up_answers_404_alike(account_manager, client_a, client_b, portal_owner_a):
    request = _request(account_manager)
    assert access_client_by_id(request=request, client_id=client_a.pk) == client_a
    assert access_client_by_id(request=request, client_id=str(client_a.pk)) == client_a
    for client_id in (client_b.pk, 987654, "nonsense", None):
        with pytest.raises(Http404):
            access_client_by_id(request=request, client_id=client_id)
    with pytest.raises(Http404):  # a portal member of client A is no staff
        access_client_by_id(request=_request(portal_owner_a), client_id=client_a.pk)


@pytest.mark.parametrize("page", PAGES)
def test_every_client_page_answers_a_foreign_and_a_missing_client_alike(
    client, account_manager, client_a, client_b, page
):
    client.force_login(account_manager)
    assert client.get(reverse(page, args=[client_a.pk])).status_code == 200
    foreign = client.get(reverse(page, args=[client_b.pk]))
    missing = client.get(reverse(page, args=[987654]))
    assert foreign.status_code == missing.status_code == 404
    assert client_b.name not in foreign.content.decode()


def test_recompute_refuses_a_foreign_missing_or_malformed_client(client, account_manager, client_b):
    client.force_login(account_manager)
    url = reverse("admin:segments_scoringrun_recompute")
    for client_id in (client_b.pk, 987654, "nonsense", ""):
        assert client.post(url, {"client": client_id}).status_code == 404
