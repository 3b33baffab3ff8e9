"""Portal pages: a member sees their client, anyone else gets the same 404."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import get_resolver, reverse

from agency.models import AuditLogEntry
from campaigns.authoring import chain_create, template_create
from clients.ingest import ingest_records
from clients.models import ClientMembership, Customer, ImportJob
from clients.services import import_job_run
from consent.checkpoints import CHECKPOINT_ACTION

pytestmark = pytest.mark.django_db


@pytest.fixture
def base_a(client_a):
    ingest_records(
        client=client_a,
        kind="customers",
        records=[
            {
                "external_id": "c1",
                "email": "anna@example.ru",
                "phone": "+79161234567",
                "first_name": "Анна",
            },
            {"external_id": "c2", "email": "boris@example.ru"},
        ],
    )
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            {
                "external_id": "o1",
                "customer_external_id": "c1",
                "placed_at": "2026-10-05T10:00:00+03:00",
                "amount": "8000",
            },
            {
                "external_id": "o2",
                "customer_external_id": "c1",
                "placed_at": "2026-11-05T10:00:00+03:00",
                "amount": "2000",
            },
            {
                "external_id": "o3",
                "customer_external_id": "c2",
                "placed_at": "2026-11-06T10:00:00+03:00",
                "amount": "500",
                "status": "refunded",
            },
        ],
    )
    job = ImportJob.objects.create(client=client_a, kind="customers", status="rejected")
    job.error_report.save("e.csv", ContentFile(b"row,field,reason,value\n2,email,bad,x\n"))
    checkpoint = AuditLogEntry.objects.create(
        action=CHECKPOINT_ACTION, source="system", client_id=client_a.pk, details={}
    )
    template = template_create(
        client=client_a, name="Письмо", channel="email", subject="Тема", body="{{ first_name }}"
    )
    chain = chain_create(
        client=client_a,
        data={"name": "Цепочка", "trigger": "registration"},
        steps=[{"template": template}],
    )
    return {
        "customer": Customer.objects.for_client(client_a).get(external_id="c1"),
        "job": job,
        "checkpoint": checkpoint,
        "chain": chain,
    }


@pytest.fixture
def owner_b(client_b):
    user = get_user_model().objects.create_user(username="owner-b", password="pass-12345")
    ClientMembership.objects.create(user=user, client=client_b, role="owner")
    return user


def test_dashboard_shows_the_clients_numbers_and_chart(client, portal_owner_a, client_a, base_a):
    client.force_login(portal_owner_a)
    response = client.get(reverse("portal:dashboard", args=[client_a.slug]))
    assert response.status_code == 200
    summary = response.context["summary"]
    assert summary["customers"] == 2
    assert summary["orders"] == 3
    assert str(summary["revenue"]) == "10000.00"  # the refund is not revenue
    chart = response.context["chart"]
    assert chart["labels"] == ["2026-10", "2026-11"]
    assert chart["revenue"] == [8000.0, 2000.0]
    assert b"vendor/chartjs/chart.umd.min.js" in response.content


def test_single_client_user_lands_on_dashboard(client, portal_owner_a, client_a):
    client.force_login(portal_owner_a)
    response = client.get(reverse("portal:home"))
    assert response.status_code == 302
    assert response.url == reverse("portal:dashboard", args=[client_a.slug])


def test_anonymous_is_sent_to_login(client, client_a):
    response = client.get(reverse("portal:dashboard", args=[client_a.slug]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("portal:login"))


def test_customer_search_by_phone_in_any_spelling(client, portal_owner_a, client_a, base_a):
    client.force_login(portal_owner_a)
    url = reverse("portal:customers", args=[client_a.slug])
    found = client.get(url, {"q": "8 (916) 123-45-67"}).context["customers"]
    assert [c.external_id for c in found] == ["c1"]
    by_email = client.get(url, {"q": "BORIS@example.ru"}).context["customers"]
    assert [c.external_id for c in by_email] == ["c2"]


def _portal_routes() -> list[tuple[str, list[str]]]:
    """(name, URL arguments) of every route of the ``portal`` namespace, read from the resolver:
    a new page is in the sweep the day it is added."""
    resolver = get_resolver()
    namespace_resolver = resolver.namespace_dict["portal"][1]
    routes = []
    for name, entries in namespace_resolver.reverse_dict.lists():
        if not isinstance(name, str):
            continue
        for _possibility, _pattern, _defaults, _converters in entries:
            arguments = sorted(_possibility[0][1])
            routes.append((name, arguments))
    return sorted(set((name, tuple(args)) for name, args in routes))


#: Which of client A's objects fills a route's arguments besides the client slug.
OBJECT_ARGUMENT = {
    "customer": "customer",
    "import_errors": "job",
    "consent_checkpoint": "checkpoint",
    "campaign": "chain",
}


def test_every_client_page_is_404_for_another_clients_user(
    client, owner_b, client_a, client_b, base_a
):
    client.force_login(owner_b)
    client_routes = [(n, args) for n, args in _portal_routes() if "client_slug" in args]
    assert {n for n, _ in client_routes} >= {
        "dashboard",
        "customers",
        "audiences",
        "campaigns",
        "campaign",
    }
    for name, args in client_routes:
        extra = [a for a in args if a != "client_slug"]
        if extra:
            assert name in OBJECT_ARGUMENT, f"portal:{name} needs an object of client A here"
            assert extra == ["pk"], (name, extra)
            obj = base_a[OBJECT_ARGUMENT[name]]
            foreign = reverse(f"portal:{name}", kwargs={"client_slug": client_a.slug, "pk": obj.pk})
            # Through their own slug, client A's object is not reachable either.
            own = reverse(f"portal:{name}", kwargs={"client_slug": client_b.slug, "pk": obj.pk})
            assert client.get(own).status_code == 404, own
        else:
            foreign = reverse(f"portal:{name}", kwargs={"client_slug": client_a.slug})
        assert client.get(foreign).status_code == 404, foreign


def test_viewer_sees_pages_but_not_the_rejected_rows_with_personal_data(
    client, django_user_model, client_a, base_a
):
    viewer = django_user_model.objects.create_user(username="viewer-a", password="pass-12345")
    ClientMembership.objects.create(user=viewer, client=client_a, role="viewer")
    client.force_login(viewer)
    imports = client.get(reverse("portal:imports", args=[client_a.slug]))
    assert imports.status_code == 200
    errors_url = reverse("portal:import_errors", args=[client_a.slug, base_a["job"].pk])
    assert errors_url not in imports.content.decode()
    assert client.get(errors_url).status_code == 403


def test_unknown_slug_and_foreign_slug_answer_alike(client, owner_b, client_a):
    client.force_login(owner_b)
    foreign = client.get(reverse("portal:dashboard", args=[client_a.slug]))
    missing = client.get(reverse("portal:dashboard", args=["no-such-client"]))
    assert foreign.status_code == missing.status_code == 404


def test_error_report_download(client, portal_owner_a, client_a, base_a):
    client.force_login(portal_owner_a)
    response = client.get(reverse("portal:import_errors", args=[client_a.slug, base_a["job"].pk]))
    assert response.status_code == 200
    assert b"2,email,bad,x" in b"".join(response.streaming_content)


def test_error_report_download_neutralises_formulas(
    client, portal_owner_a, client_a, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    job = ImportJob.objects.create(client=client_a, kind="customers")
    job.file.save("base.csv", ContentFile(b'external_id,email\nA-1,"@SUM(1+1)*cmd|x"\n'))
    job = import_job_run(job=job)
    assert job.status == ImportJob.Status.REJECTED

    client.force_login(portal_owner_a)
    response = client.get(reverse("portal:import_errors", args=[client_a.slug, job.pk]))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    data = b"".join(response.streaming_content)
    assert data.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8
    row = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1]
    assert row[:2] == ["2", "email"]
    assert row[3] == "'@SUM(1+1)*cmd|x"


def test_portal_is_russian_by_default_and_english_on_request(client, portal_owner_a, client_a):
    client.force_login(portal_owner_a)
    url = reverse("portal:customers", args=[client_a.slug])
    assert "Покупатели".encode() in client.get(url).content
    client.post(reverse("set_language"), {"language": "en", "next": url})
    assert b"Customers" in client.get(url).content
