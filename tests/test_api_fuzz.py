"""The API fuzzed from its own OpenAPI schema (schemathesis): no operation answers a 5xx.

The schema is read from ``/api/schema/`` of the app itself, every operation gets
``FUZZ_EXAMPLES`` generated requests (valid and invalid: schemathesis mixes positive and
negative cases) sent in-process through the WSGI app with a test client's API key, on a client
that has customers, orders, events, consents, a segment, a destination and an audience. The run
stops taking new operations after ``FUZZ_SECONDS``. It prints the operations and cases run, and
fails listing every 5xx with a curl command that reproduces it.

``make fuzz`` runs it with more examples (``FUZZ_EXAMPLES=... make fuzz``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.throttling import SimpleRateThrottle

from audiences.services import audience_create, destination_create
from campaigns.authoring import push_device_register
from campaigns.models import Enrollment, Message
from campaigns.presets import chain_from_preset
from clients.ingest import ingest_records
from tests.audiences.conftest import build_world

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
)

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SECONDS = float(os.environ.get("FUZZ_SECONDS", "150"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases every run: a 5xx found is a 5xx reproduced
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class FuzzReport:
    operations: int = 0
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    nonconforming: dict[str, str] = field(default_factory=dict)  # operation: first failure
    not_run: list[str] = field(default_factory=list)


def _failure_text(failure: BaseException) -> str:
    """The first line of each failure schemathesis found (what, where), one per line."""
    parts = failure.exceptions if isinstance(failure, BaseExceptionGroup) else [failure]
    lines = []
    for part in parts:
        text = [line.strip() for line in str(part).splitlines() if line.strip()]
        lines.append(" | ".join(text[:4])[:300])
    return "; ".join(lines)


def _real_ids(client) -> dict[str, int]:
    """An existing object of the client per collection, for the ``{id}`` of its paths."""
    from audiences.models import Audience, Destination
    from campaigns.models import Message, MessageTemplate, PushDevice, TriggerChain
    from clients.models import Customer, Event, Order
    from segments.models import Segment

    ids = {}
    for name, model in [
        ("customers", Customer),
        ("orders", Order),
        ("events", Event),
        ("segments", Segment),
        ("audiences", Audience),
        ("destinations", Destination),
        ("chains", TriggerChain),
        ("templates", MessageTemplate),
        ("messages", Message),
        ("push-devices", PushDevice),
    ]:
        found = model.objects.for_client(client).order_by("pk").values_list("pk", flat=True)
        if found:
            ids[name] = found[0]
    return ids


def _strategies(operation, ids: dict[str, int]):
    """Valid cases, valid cases about the client's real objects, and invalid cases."""
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    collection = operation.path.removeprefix("/api/v1/").split("/")[0]
    names = [p.name for p in operation.path_parameters]
    if collection in ids and names:
        strategies.append(
            operation.as_strategy(
                GenerationMode.POSITIVE, path_parameters={names[0]: ids[collection]}
            )
        )
    try:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    except Exception:  # noqa: BLE001, S110 - an operation with nothing to make invalid
        pass
    return st.one_of(strategies)


@pytest.fixture
def fuzz_world(client_a, monkeypatch):
    """A client with data of every kind, its API key; throttles off (they answer 429 to a
    fuzzer's pace, which hides what is behind them); request warnings quiet."""
    world = build_world(client_a, 30, no_consent=3, suppressed=2)
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            {
                "external_id": f"o{i}",
                "customer_external_id": f"c{i % 10:06d}",
                "placed_at": f"2025-0{1 + i % 9}-10T12:00:00+03:00",
                "amount": str(1000 + 37 * i),
            }
            for i in range(40)
        ],
    )
    ingest_records(
        client=client_a,
        kind="events",
        records=[
            {"customer_external_id": f"c{i:06d}", "type": "cart", "occurred_at": "2025-05-01"}
            for i in range(10)
        ],
    )
    destination = destination_create(
        client=client_a,
        name="Яндекс",
        platform="yandex_audiences",
        credentials={"token": "fuzz-token"},
    )
    audience_create(client=client_a, name="Москва", segment=world.segment, destination=destination)
    chain = chain_from_preset(client_a, "welcome")
    customer = next(iter(world.customers.values()))
    enrollment = Enrollment.objects.create(
        client=client_a, chain=chain, customer=customer, arm="treatment"
    )
    Message.objects.create(
        client=client_a,
        enrollment=enrollment,
        step=chain.steps.get(position=1),
        chain=chain,
        customer=customer,
        channel="email",
        arm="treatment",
        address=customer.email,
    )
    push_device_register(client=client_a, customer=customer, provider="rustore", token="fuzz")
    monkeypatch.setattr(SimpleRateThrottle, "allow_request", lambda self, request, view: True)
    quiet = logging.getLogger("django.request")
    level = quiet.level
    quiet.setLevel(logging.ERROR + 10)  # 5xx are counted here, not read from the log
    # As Django's test client does: the requests run inside the test's transaction, so the
    # handler must not close the connection around each one.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield world
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    quiet.setLevel(level)


def test_no_operation_answers_a_server_error(fuzz_world, api_key_a):
    app = WSGIHandler()  # the app gunicorn serves (get_wsgi_application without setting up again)
    auth = {"Authorization": f"Api-Key {api_key_a}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, headers=auth)
    report = FuzzReport()
    started = time.monotonic()

    ids = _real_ids(fuzz_world.client)
    conformance = [response_schema_conformance, content_type_conformance]

    def send(case) -> None:
        response = case.call(app=app, headers=auth)
        report.cases += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            curl = case.as_curl_command(headers=auth)
            report.server_errors.append(f"{case.operation.label} -> {response.status_code}\n{curl}")
            return
        if case.operation.label in report.nonconforming:
            return
        try:
            case.validate_response(response, checks=conformance)
        except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001 - a report, not a verdict
            report.nonconforming[case.operation.label] = _failure_text(failure)

    for result in schema.get_all_operations():
        operation = result.ok()
        if time.monotonic() - started > SECONDS:
            report.not_run.append(operation.label)
            continue
        report.operations += 1

        def one(case) -> None:
            send(case)

        FUZZ_SETTINGS(given(case=_strategies(operation, ids))(one))()

    statuses = dict(sorted(report.statuses.items()))
    print(
        f"\nfuzz: {report.operations} operations, {report.cases} cases, "
        f"{len(report.server_errors)} server errors, statuses {statuses}, "
        f"{len(report.nonconforming)} operations with a reply not as documented, "
        f"{time.monotonic() - started:.0f} s"
        + (f"; not run (time bound): {report.not_run}" if report.not_run else "")
    )
    for label, failure in sorted(report.nonconforming.items()):
        print(f"  not as documented: {label}: {failure}")
    assert report.server_errors == [], "\n\n".join(report.server_errors[:20])
    assert report.operations > 0
