"""Attribution benchmark: ``reports.touchpoints.attribution_report`` over a client's events and
orders in PostgreSQL, end to end (the three set-based reads and the five models).

    scripts/with_test_services.sh .venv/bin/python bench/attribution.py [--sizes 100000,1000000]

For each size N: N customers, 10·N orders (3 % refunded) and 20·N events over two years, drawn
with a fixed seed and loaded with COPY (not timed). Events: 40 % utm-tagged visits (8 sources,
40 campaigns), 15 % email clicks and 5 % SMS clicks of 10 chains, 10 % visits with a yclid, the
rest plain visits (not touches). Timed: the report for the last 365 days (30-day lookback,
half-life 7), twice, with the peak RSS of the process (sampled from /proc/self/statm in a fresh
process: ``ru_maxrss`` would include the loader's memory inherited through fork).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

END = dt.date(2026, 3, 31)
DAYS = 730


def _copy(table: str, frame) -> None:
    import csv
    import io

    from django.db import connection

    with connection.cursor() as cursor:
        with cursor.cursor.copy(
            f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            step = 1_000_000
            for offset in range(0, len(frame), step):
                buffer = io.StringIO()
                frame.iloc[offset : offset + step].to_csv(
                    buffer, header=False, index=False, quoting=csv.QUOTE_NONNUMERIC
                )
                copy.write(buffer.getvalue().encode())


def load(client, n: int, seed: int) -> dict:
    import numpy as np
    import pandas as pd
    from django.db import connection

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM clients_customer")
        first_id = cursor.fetchone()[0] + 1
    stamp = "2026-04-01 00:00:00+00"
    ids = np.arange(first_id, first_id + n)
    _copy(
        "clients_customer",
        pd.DataFrame(
            {
                "id": ids,
                "client_id": client.pk,
                "external_id": [f"c{i}" for i in range(n)],
                "email": "",
                "phone": "",
                "first_name": "",
                "last_name": "",
                "city": "",
                "attributes": "{}",
                "first_seen": stamp,
                "source": "bench",
                "created_at": stamp,
                "updated_at": stamp,
            }
        ),
    )
    start_us = np.datetime64(END - dt.timedelta(days=DAYS), "us")
    span = DAYS * 86_400 * 1_000_000

    def times(k: int) -> np.ndarray:
        return (start_us + rng.integers(0, span, k).astype("timedelta64[us]")).astype(str)

    n_orders = 10 * n
    _copy(
        "clients_order",
        pd.DataFrame(
            {
                "client_id": client.pk,
                "external_id": np.char.add("o", np.arange(n_orders).astype(str)),
                "customer_id": rng.choice(ids, n_orders),
                "placed_at": np.char.add(times(n_orders), "+00"),
                "amount": rng.integers(100_00, 20_000_00, n_orders) / 100,
                "status": np.where(rng.random(n_orders) < 0.03, "refunded", "paid"),
                "channel": "web",
                "items": "[]",
                "created_at": stamp,
                "updated_at": stamp,
            }
        ),
    )
    n_events = 20 * n
    kind = rng.random(n_events)
    utm = kind < 0.40
    email = (kind >= 0.40) & (kind < 0.55)
    sms = (kind >= 0.55) & (kind < 0.60)
    yclid = (kind >= 0.60) & (kind < 0.70)
    sources = np.array(["google", "vk", "yandex", "mailru", "telegram", "ok", "dzen", "avito"])
    chain = rng.integers(1, 11, n_events).astype(str)
    properties = np.full(n_events, "{}", dtype=object)
    chain_props = np.char.add(np.char.add('{"chain_id": ', chain), ', "message_id": 1}')
    properties[email | sms] = chain_props[email | sms]
    properties[yclid] = '{"yclid": "123456789"}'
    _copy(
        "clients_event",
        pd.DataFrame(
            {
                "client_id": client.pk,
                "external_id": np.char.add("e", np.arange(n_events).astype(str)),
                "customer_id": rng.choice(ids, n_events),
                "type": np.select([email, sms], ["email_click", "sms_click"], "visit"),
                "occurred_at": np.char.add(times(n_events), "+00"),
                "properties": properties,
                "utm_source": np.where(utm, sources[rng.integers(0, 8, n_events)], ""),
                "utm_medium": np.where(utm, "cpc", ""),
                "utm_campaign": np.where(
                    utm, np.char.add("camp", rng.integers(0, 40, n_events).astype(str)), ""
                ),
                "created_at": stamp,
                "updated_at": stamp,
            }
        ),
    )
    with connection.cursor() as cursor:
        for table in ("clients_customer", "clients_order", "clients_event"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    return {"orders": n_orders, "events": n_events, "load_s": time.perf_counter() - started}


def child(client_id: int) -> None:
    """The timed part, in a fresh process: its peak RSS is the report's own."""
    import django

    django.setup()
    from measure import PeakRss

    from clients.models import Client
    from reports import touchpoints

    client = Client.objects.get(pk=client_id)
    stages: dict[str, float] = {}

    def timed(name, function):
        def wrapper(**kwargs):
            started = time.perf_counter()
            try:
                return function(**kwargs)
            finally:
                stages[name] = stages.get(name, 0) + time.perf_counter() - started

        return wrapper

    touchpoints.touchpoints_load = timed("touches", touchpoints.touchpoints_load)
    touchpoints.orders_load = timed("orders", touchpoints.orders_load)
    touchpoints.predicted_clv_load = timed("clv", touchpoints.predicted_clv_load)
    for run in (1, 2):
        stages.clear()
        started = time.perf_counter()
        with PeakRss() as rss:
            report = touchpoints.attribution_report(
                client=client, date_from=END - dt.timedelta(days=364), date_to=END
            )
        took = time.perf_counter() - started
        peak = rss.peak / 1024**3
        reads = " ".join(f"{k} {v:.1f} s," for k, v in stages.items())
        print(
            f"  run {run}: {took:.1f} s ({reads} models {took - sum(stages.values()):.1f} s), "
            f"peak RSS {peak:.2f} GiB; {report['totals']['orders']:,} orders in the period, "
            f"{report['totals']['orders_with_touches']:,} with touches, "
            f"{report['totals']['touches_in_journeys']:,} touches in journeys, "
            f"{len(report['by_channel'])} channels, {len(report['by_campaign'])} campaigns",
            flush=True,
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000", help="customers per run")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from clients.services import client_create

    if connection.vendor != "postgresql":
        sys.exit(
            "bench/attribution.py measures PostgreSQL: run it via scripts/with_test_services.sh"
        )
    call_command("migrate", verbosity=0)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    )
    for n in (int(s) for s in args.sizes.split(",") if s):
        client = client_create(name=f"Bench attribution {n}", tier_code="enterprise")
        counts = load(client, n, args.seed)
        print(
            f"N={n:,}: {counts['orders']:,} orders, {counts['events']:,} events, loaded in {counts['load_s']:.0f} s"
        )
        connection.close()
        subprocess.run([sys.executable, __file__, "--child", str(client.pk)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
