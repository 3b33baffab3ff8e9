"""Ingestion benchmark: CSV import of orders and bulk API upserts, on PostgreSQL.

Run with throwaway services:  make bench  (or scripts/with_test_services.sh .venv/bin/python
bench/ingest.py --orders 10000,100000,1000000 --api-rows 200000). Prints rows/s and peak memory
for each size, and the machine it ran on. Nothing here asserts a time: it measures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from measure import PeakRss  # noqa: E402  (bench/ is the script's directory)

from clients.models import Customer, Order  # noqa: E402
from clients.services import api_key_create, client_create, csv_import  # noqa: E402


def machine() -> str:
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except StopIteration:
        pass
    with connection.cursor() as cur:
        cur.execute("SELECT version()")
        db = cur.fetchone()[0].split(" on ")[0]
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB, "
        f"Python {platform.python_version()}, {db}"
    )


def write_orders_csv(path: Path, rows: int, customers: int, rng: np.random.Generator, offset: int):
    customer_ids = rng.integers(0, customers, size=rows)
    amounts = np.round(rng.lognormal(np.log(8000), 0.6, size=rows), 2)
    seconds = rng.integers(0, 2 * 365 * 86400, size=rows)
    base = np.datetime64("2024-01-01T00:00:00")
    placed = (base + seconds.astype("timedelta64[s]")).astype(str)
    statuses = rng.choice(["paid", "paid", "paid", "paid", "refunded", "cancelled"], size=rows)
    channels = rng.choice(["web", "app", "offline"], size=rows)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["external_id", "customer_external_id", "placed_at", "amount", "status", "channel"]
        )
        for i in range(rows):
            writer.writerow(
                [
                    f"o{offset + i}",
                    f"c{customer_ids[i]}",
                    placed[i].replace("T", " "),
                    f"{amounts[i]:.2f}",
                    statuses[i],
                    channels[i],
                ]
            )


def seed_customers(client, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "customers.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["external_id", "email", "first_name"])
            for i in range(count):
                writer.writerow([f"c{i}", f"user{i}@example.ru", "Имя"])
        with path.open("rb") as fh:
            result = csv_import(client=client, kind="customers", file=fh)
    assert result.committed and result.created == count, result


def bench_csv(sizes: list[int], customers: int) -> list[tuple]:
    rng = np.random.default_rng(7)
    rows_out = []
    for n, size in enumerate(sizes):
        client = client_create(name=f"Bench CSV {n}", tier_code="enterprise")
        seed_customers(client, customers)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "orders.csv"
            write_orders_csv(path, size, customers, rng, offset=0)
            mib = path.stat().st_size / 1024 / 1024
            with path.open("rb") as fh, PeakRss() as mem:
                started = time.perf_counter()
                result = csv_import(client=client, kind="orders", file=fh)
                elapsed = time.perf_counter() - started
            assert result.committed and result.created == size, result
            stored = Order.objects.for_client(client).count()
            assert stored == size
            # A replay of the same file: every row matched, nothing rewritten.
            with path.open("rb") as fh:
                started = time.perf_counter()
                replay = csv_import(client=client, kind="orders", file=fh)
                replay_elapsed = time.perf_counter() - started
            assert replay.created == 0 and replay.updated == 0 and replay.unchanged == size
        rows_out.append((size, mib, elapsed, size / elapsed, mem.delta_mib, size / replay_elapsed))
        print(
            f"csv orders {size:>9,} rows ({mib:6.1f} MiB): {elapsed:7.2f} s, "
            f"{size / elapsed:>10,.0f} rows/s, peak RSS +{mem.delta_mib:6.1f} MiB; "
            f"replay {size / replay_elapsed:>10,.0f} rows/s",
            flush=True,
        )
    return rows_out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_api(total_rows: int, batch: int) -> tuple:
    client = client_create(name="Bench API", tier_code="enterprise")
    _key, raw_key = api_key_create(client=client, name="bench")
    port = free_port()
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "API_THROTTLE_RATE": "100000/minute"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "config.wsgi:application",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    session = requests.Session()
    session.headers.update(
        {"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"}
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(100):
            try:
                session.get(f"{base}/customers/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        rng = np.random.default_rng(11)
        bodies = []
        for start in range(0, total_rows, batch):
            records = [
                {
                    "external_id": f"api{i}",
                    "email": f"api{i}@example.ru",
                    "phone": f"+7916{int(rng.integers(0, 10_000_000)):07d}",
                    "first_name": "Анна",
                    "city": "Москва",
                    "attributes": {"segment": int(i % 7)},
                }
                for i in range(start, min(start + batch, total_rows))
            ]
            bodies.append(json.dumps(records))
        started = time.perf_counter()
        created = 0
        for body in bodies:
            response = session.post(f"{base}/customers/bulk/", data=body, timeout=300)
            response.raise_for_status()
            created += response.json()["created"]
        elapsed = time.perf_counter() - started
        assert created == total_rows, created
        started = time.perf_counter()
        for body in bodies:
            response = session.post(f"{base}/customers/bulk/", data=body, timeout=300)
            response.raise_for_status()
        replay_elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(10)
    assert Customer.objects.for_client(client).count() == total_rows
    print(
        f"bulk API customers {total_rows:,} rows in {batch:,}-row requests to 1 gunicorn worker: "
        f"{elapsed:6.2f} s, {total_rows / elapsed:>9,.0f} rows/s; replay {total_rows / replay_elapsed:>9,.0f} rows/s",
        flush=True,
    )
    return total_rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--orders", default="10000,100000,1000000", help="CSV sizes, comma separated"
    )
    parser.add_argument(
        "--customers", type=int, default=100_000, help="customers the orders reference"
    )
    parser.add_argument("--api-rows", type=int, default=200_000)
    parser.add_argument("--api-batch", type=int, default=10_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/ingest.py measures PostgreSQL: run it via scripts/with_test_services.sh")
    call_command("migrate", verbosity=0)
    print(machine(), flush=True)
    print(
        f"peak RSS of the process so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    bench_csv([int(s) for s in args.orders.split(",") if s], args.customers)
    if args.api_rows:
        bench_api(args.api_rows, args.api_batch)


if __name__ == "__main__":
    main()
