"""Scoring pipeline benchmark: PostgreSQL to written scores, next to the analyst's pipeline.

    scripts/with_test_services.sh .venv/bin/python bench/scoring.py \
        [--sizes 10000,100000,1000000] [--seed 2024]

(or ``make bench-scoring``). For each size, customers with about ten orders each are drawn with a
fixed seed from a BG/NBD process (per day: r=0.75, alpha=22, a=0.6, b=7; first purchases spread
over three years to AS_OF) with Gamma-Gamma order values (p=6, q=3.8, v=1500, i.e. about
3,200 ₽ an order); 4 % of orders get a second order the same day and 5 % are refunded or
cancelled; 5 % of customers never bought. They are loaded into clients_customer and
clients_order with COPY (not timed).

Timed, each in a fresh process so that peak memory is the pipeline's own:

1. ``segments.services.scoring_run_execute`` end to end, twice: the first run (no previous
   scores) and the daily case (replacing the previous run's scores, with the RFM transitions).
   Printed per stage (extract, rfm, lifecycle, fit, clv, assemble, holdout, write), with the
   peak RSS sampled from /proc/self/statm. The holdout check runs while the database writes, so
   its time is also inside write's and the stages add up to more than the total. Goal (issue
   4): <= 15 s and <= 3 GB at 1M/10M.
2. The pipeline an analyst would write today on the same data: ``pandas.read_sql`` of the paid
   orders (local time, amounts as float), lifetimes' ``summary_data_from_transaction_data``
   (freq="D": purchase days, observation end = AS_OF), ``BetaGeoFitter``,
   ``GammaGammaFitter`` (repeat customers with a positive mean value, as ours) and
   ``customer_lifetime_value`` (12 months, 1 % a month). Goal: ours >= 3x faster, the same
   parameters to 1e-3.

Both fit the same definition: one purchase per customer and calendar day in the client's zone,
frequency = repeat purchase days, T and recency in days up to AS_OF inclusive, the spend model on
the mean value of the repeat purchase days. The parameter difference is printed absolute and
relative: alpha is in days and v in roubles, so their absolute differences scale with the units.

lifetimes 0.11.3 is a bench-only dependency (pyproject extra "bench"). When it is not importable
here, the script re-runs itself in var/bench-venv (the virtualenv of bench/clv_fit.py, with its
pinned versions) after adding the project's own dependencies there; .venv is never touched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from clv_fit import BENCH_REQUIREMENTS, BENCH_VENV  # noqa: E402
from measure import PeakRss  # noqa: E402

AS_OF = dt.date(2026, 1, 31)
HISTORY_DAYS = 3 * 365
TIME_ZONE = "Europe/Moscow"
TRUE_BGNBD = {"r": 0.75, "alpha": 22.0, "a": 0.6, "b": 7.0}  # per day
TRUE_GG = {"p": 6.0, "q": 3.8, "v": 1500.0}  # roubles
SAME_DAY_SHARE = 0.04
NOT_PAID_SHARE = 0.05
NEVER_BOUGHT_SHARE = 0.05
CLV_MONTHS = 12
DISCOUNT = 0.01
PARAMS = ("r", "alpha", "a", "b", "p", "q", "v")
GOAL_SECONDS, GOAL_BYTES, GOAL_SPEEDUP, GOAL_PARAM = 15.0, 3 * 1024**3, 3.0, 1e-3


# --------------------------------------------------------------------------------------------
# Environment


def _ensure_lifetimes(argv: list[str]) -> None:
    """Re-run in var/bench-venv (clv_fit's pins plus the project's dependencies) when lifetimes
    is not importable here."""
    try:
        import lifetimes  # noqa: F401
    except ImportError:
        pass
    else:
        return
    if os.environ.get("SCORING_BENCH_IN_VENV"):
        sys.exit("lifetimes is still not importable in the bench virtualenv")
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / ".requirements"  # bench/clv_fit.py's own stamp: kept as it writes it
    wanted = "\n".join(BENCH_REQUIREMENTS)
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"creating {BENCH_VENV} with {', '.join(BENCH_REQUIREMENTS)}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(BENCH_VENV)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *BENCH_REQUIREMENTS], check=True
        )
        stamp.write_text(wanted)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    extra_stamp = BENCH_VENV / ".requirements-scoring"
    extra = "\n".join(project)
    if not extra_stamp.exists() or extra_stamp.read_text() != extra:
        print(f"adding the project's dependencies to {BENCH_VENV}", flush=True)
        # The pins again, so that the project's ranges never move clv_fit's versions.
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *project, *BENCH_REQUIREMENTS],
            check=True,
        )
        extra_stamp.write_text(extra)
    env = {**os.environ, "SCORING_BENCH_IN_VENV": "1"}
    result = subprocess.run([str(python), str(Path(__file__).resolve()), *argv], env=env)
    sys.exit(result.returncode)


def machine() -> str:
    from django.db import connection

    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    cpu = "unknown cpu"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with connection.cursor() as cur:
        cur.execute("SELECT version()")
        db = cur.fetchone()[0].split(" on ")[0]
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB, "
        f"Python {platform.python_version()}, {db}"
    )


def versions() -> str:
    import lifetimes
    import numpy
    import pandas
    import pyarrow
    import scipy

    return (
        f"numpy {numpy.__version__}, pandas {pandas.__version__}, scipy {scipy.__version__}, "
        f"pyarrow {pyarrow.__version__}, lifetimes {lifetimes.__version__}; "
        f"python {sys.executable}"
    )


# --------------------------------------------------------------------------------------------
# Data: a BG/NBD purchase process with Gamma-Gamma values, loaded with COPY


def generate(n: int, seed: int):
    """Customers 0..n-1 and their orders: (customer index, local wall time, amount, status)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    end = np.datetime64(AS_OF, "D") + 1  # the end of AS_OF, local time
    start = end - HISTORY_DAYS
    buyers = np.flatnonzero(rng.random(n) >= NEVER_BOUGHT_SHARE)
    m = len(buyers)
    first = rng.uniform(0.0, HISTORY_DAYS, m)  # days after start
    big_t = HISTORY_DAYS - first  # observed time after the first purchase
    lam = rng.gamma(TRUE_BGNBD["r"], 1.0 / TRUE_BGNBD["alpha"], m)
    p = rng.beta(TRUE_BGNBD["a"], TRUE_BGNBD["b"], m)
    dropout_after = rng.geometric(p)
    potential = rng.poisson(lam * big_t)
    x = np.minimum(potential, dropout_after)
    # The x first of `potential` uniform order statistics on (0, T), by exponential spacings:
    # U_(k) = (E_1 + ... + E_k) / (E_1 + ... + E_(N+1)).
    owner = np.repeat(np.arange(m), x)
    csum = np.cumsum(rng.exponential(1.0, len(owner)))
    group_end = np.cumsum(x)
    before = np.concatenate(([0.0], csum))[group_end - x]  # the sum before each group
    within = csum - np.repeat(before, x)
    last_within = np.zeros(m)
    has = x > 0
    last_within[has] = within[group_end[has] - 1]
    tail = rng.gamma(potential - x + 1.0, 1.0)  # the rest of the N + 1 spacings
    repeat_at = first[owner] + big_t[owner] * within / np.repeat(last_within + tail, x)
    del csum, within

    who = np.concatenate([np.arange(m), owner])
    at = np.concatenate([first, repeat_at])
    # Gamma-Gamma: nu ~ Gamma(q, rate v) per customer, each value ~ Gamma(p, rate nu).
    nu = rng.gamma(TRUE_GG["q"], 1.0 / TRUE_GG["v"], m)
    extra = rng.random(len(who)) < SAME_DAY_SHARE
    who = np.concatenate([who, who[extra]])
    same_day = np.floor(at[extra]) + rng.uniform(0.0, 1.0, int(extra.sum()))
    at = np.concatenate([at, same_day])
    amount = np.maximum(np.round(rng.gamma(TRUE_GG["p"], 1.0 / nu[who]), 2), 1.0)
    status = np.where(
        rng.random(len(who)) < NOT_PAID_SHARE,
        np.where(rng.random(len(who)) < 0.5, 1, 2),
        0,
    ).astype(np.int8)
    seconds = np.minimum(np.floor(at * 86400.0), HISTORY_DAYS * 86400 - 1).astype(np.int64)
    placed = start.astype("datetime64[s]") + seconds.astype("timedelta64[s]")
    order = np.argsort(placed, kind="stable")  # orders arrive in time order, as in real life
    return buyers[who[order]], placed[order], amount[order], status[order]


def _copy_table(table_name: str, columns: list[str], arrow_table, *, batch: int = 1_000_000):
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    from django.db import connection

    with connection.cursor() as cursor:
        # Wall-clock timestamps in the file are the client's local times.
        cursor.execute(f"SET TIME ZONE '{TIME_ZONE}'")
        try:
            with cursor.cursor.copy(
                f"COPY {table_name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
            ) as copy:
                for offset in range(0, arrow_table.num_rows, batch):
                    sink = pa.BufferOutputStream()
                    pa_csv.write_csv(
                        arrow_table.slice(offset, batch),
                        sink,
                        pa_csv.WriteOptions(include_header=False, quoting_style="needed"),
                    )
                    copy.write(sink.getvalue().to_pybytes())
        finally:
            cursor.execute("SET TIME ZONE 'UTC'")


def load(client, n: int, seed: int) -> dict:
    """Generate and COPY ``n`` customers and their orders for ``client``; returns counts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from django.db import connection

    started = time.perf_counter()
    customer_index, placed, amount, status = generate(n, seed)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM clients_customer")
        first_id = cursor.fetchone()[0] + 1
    now = np.datetime64("2026-02-01T12:00:00", "s")  # local wall time, as placed_at
    ids = pa.array(np.arange(first_id, first_id + n, dtype=np.int64))
    index = pa.array(np.arange(n, dtype=np.int64))

    def const(value, rows: int, type_=None):
        return pa.array(np.full(rows, value), type=type_ or pa.string())

    stamp = pa.array(np.full(n, now))
    customers = pa.table(
        {
            "id": ids,
            "client_id": const(client.pk, n, pa.int64()),
            "external_id": pc.binary_join_element_wise("c", pc.cast(index, pa.string()), ""),
            "email": const("", n),
            "phone": const("", n),
            "first_name": const("", n),
            "last_name": const("", n),
            "city": const("", n),
            "attributes": const("{}", n),
            "first_seen": stamp,
            "source": const("bench", n),
            "created_at": stamp,
            "updated_at": stamp,
        }
    )
    _copy_table("clients_customer", customers.column_names, customers)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('clients_customer', 'id'), "
            "(SELECT MAX(id) FROM clients_customer))"
        )
    rows = len(customer_index)
    statuses = np.array(["paid", "refunded", "cancelled"])
    order_stamp = pa.array(np.full(rows, now))
    orders = pa.table(
        {
            "client_id": const(client.pk, rows, pa.int64()),
            "external_id": pc.binary_join_element_wise(
                "o", pc.cast(pa.array(np.arange(rows)), pa.string()), ""
            ),
            "customer_id": pa.array(customer_index + first_id),
            "placed_at": pa.array(placed),
            "amount": pa.array(amount),
            "status": pa.array(statuses[status]),
            "channel": const("web", rows),
            "items": const("[]", rows),
            "created_at": order_stamp,
            "updated_at": order_stamp,
        }
    )
    del customer_index, placed, amount
    _copy_table("clients_order", orders.column_names, orders)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE clients_customer")
        cursor.execute("VACUUM ANALYZE clients_order")
    paid = int((status == 0).sum())
    return {
        "orders": rows,
        "paid": paid,
        "generate_s": generated,
        "copy_s": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------------------------
# The two pipelines, each run in a child process (--child ours|lifetimes)


def child_ours(client_id: int) -> dict:
    import django

    django.setup()
    from clients.models import Client
    from segments.services import scoring_run_execute, scoring_run_request

    client = Client.objects.get(pk=client_id)
    run = scoring_run_request(client=client, source="bench", enqueue=False)
    gc.collect()
    with PeakRss() as mem:
        started = time.perf_counter()
        run = scoring_run_execute(run=run, as_of=AS_OF)
        elapsed = time.perf_counter() - started
    assert run.status == "succeeded", run.error
    params = {**run.parameters["bgnbd"], **run.parameters["gamma_gamma"]}
    return {
        "seconds": elapsed,
        "stages": run.stage_seconds,
        "peak_rss": mem.peak,
        "base_rss": mem.base,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "customers": run.customers,
        "orders": run.orders,
        "params": {name: params[name] for name in PARAMS},
        "holdout_mae": (run.holdout or {}).get("mae"),
    }


def child_lifetimes(client_id: int) -> dict:
    import warnings

    import django

    django.setup()
    import pandas as pd
    from django.db import connection
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    connection.ensure_connection()
    raw = connection.connection  # the psycopg connection
    gc.collect()
    stages = {}
    with PeakRss() as mem:
        started = t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "only SQLAlchemy connectables..."
            orders = pd.read_sql(
                "SELECT customer_id, placed_at AT TIME ZONE %(tz)s AS placed_at, "
                "amount::float8 AS amount FROM clients_order "
                "WHERE client_id = %(client)s AND status = 'paid'",
                raw,
                params={"tz": TIME_ZONE, "client": client_id},
            )
        stages["read_sql"] = time.perf_counter() - t
        t = time.perf_counter()
        summary = summary_data_from_transaction_data(
            orders,
            "customer_id",
            "placed_at",
            monetary_value_col="amount",
            observation_period_end=pd.Timestamp(AS_OF),
            freq="D",
        )
        stages["summary"] = time.perf_counter() - t
        t = time.perf_counter()
        bgf = BetaGeoFitter(penalizer_coef=0.0)
        bgf.fit(summary["frequency"], summary["recency"], summary["T"])
        stages["BetaGeoFitter"] = time.perf_counter() - t
        t = time.perf_counter()
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        ggf = GammaGammaFitter(penalizer_coef=0.0)
        ggf.fit(repeat["frequency"], repeat["monetary_value"])
        stages["GammaGammaFitter"] = time.perf_counter() - t
        t = time.perf_counter()
        ggf.customer_lifetime_value(
            bgf,
            summary["frequency"],
            summary["recency"],
            summary["T"],
            summary["monetary_value"],
            time=CLV_MONTHS,
            discount_rate=DISCOUNT,
            freq="D",
        )
        stages["customer_lifetime_value"] = time.perf_counter() - t
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "stages": stages,
        "peak_rss": mem.peak,
        "base_rss": mem.base,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "customers": len(summary),
        "orders": len(orders),
        "params": {**bgf.params_.to_dict(), **ggf.params_.to_dict()},
    }


def run_child(kind: str, client_id: int) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            kind,
            "--client-id",
            str(client_id),
        ],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    if result.returncode:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"the {kind} pipeline failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Report


def _gib(value: float) -> str:
    return f"{value / 1024**3:.2f} GiB"


def report(n: int, counts: dict, ours: list[dict], theirs: dict | None) -> bool:
    print(
        f"== {n:,} customers, {counts['orders']:,} orders ({counts['paid']:,} paid) ==\n"
        f"setup, not timed: generate {counts['generate_s']:.1f} s, COPY + VACUUM ANALYZE "
        f"{counts['copy_s']:.1f} s",
        flush=True,
    )
    for label, result in zip(("first run", "daily run (replaces scores)"), ours, strict=True):
        stages = "  ".join(f"{k} {v:.2f}" for k, v in result["stages"].items())
        print(
            f"segments scoring_run_execute, {label}: {result['seconds']:.2f} s "
            f"[{stages}]; peak RSS {_gib(result['peak_rss'])} "
            f"(+{_gib(result['peak_rss'] - result['base_rss'])} over the idle process); "
            f"{result['customers']:,} customers scored, holdout MAE "
            f"{result['holdout_mae'] if result['holdout_mae'] is None else round(result['holdout_mae'], 4)}"
        )
    worst = max(ours, key=lambda r: r["seconds"])
    if theirs is None:  # --skip-analyst: only our goal (time and memory)
        peak = max(r["peak_rss"] for r in ours)
        ok = worst["seconds"] <= GOAL_SECONDS and peak <= GOAL_BYTES
        print(
            f"analyst pipeline skipped; worst {worst['seconds']:.2f} s, peak RSS {_gib(peak)}: "
            f"{'MET' if ok else 'NOT MET'} (<= {GOAL_SECONDS:.0f} s, <= 3 GB)\n",
            flush=True,
        )
        return ok or n < 1_000_000
    stages = "  ".join(f"{k} {v:.2f}" for k, v in theirs["stages"].items())
    print(
        f"analyst (pandas.read_sql + lifetimes): {theirs['seconds']:.2f} s [{stages}]; "
        f"peak RSS {_gib(theirs['peak_rss'])}"
    )
    comparable = sum(worst["stages"].get(k, 0.0) for k in ("extract", "fit", "clv"))
    speedup = theirs["seconds"] / worst["seconds"]
    print(
        f"speed-up: {speedup:.1f}x end to end (ours also computes RFM, lifecycle, the holdout "
        f"check and writes every score); {theirs['seconds'] / comparable:.1f}x on the same work "
        f"(extract + fit + clv: {comparable:.2f} s)"
    )
    print(f"{'param':<8}{'segments':>16}{'lifetimes':>16}{'|diff|':>11}{'rel. diff':>11}")
    rel = []
    for name in PARAMS:
        a, b = ours[0]["params"][name], theirs["params"][name]
        rel.append(abs(a - b) / max(abs(b), 1.0))
        print(f"{name:<8}{a:>16.6f}{b:>16.6f}{abs(a - b):>11.2e}{rel[-1]:>11.2e}")
    peak = max(r["peak_rss"] for r in ours)
    checks = {
        f"<= {GOAL_SECONDS:.0f} s end to end": worst["seconds"] <= GOAL_SECONDS,
        "<= 3 GB peak RSS": peak <= GOAL_BYTES,
        f">= {GOAL_SPEEDUP:.0f}x faster than the analyst's pipeline": speedup >= GOAL_SPEEDUP,
        f"parameters equal to {GOAL_PARAM:g} (relative)": max(rel) <= GOAL_PARAM,
    }
    verdicts = "; ".join(f"{k}: {'MET' if ok else 'NOT MET'}" for k, ok in checks.items())
    if n < 1_000_000:
        print(f"max parameter difference: {max(rel):.2e} relative\n", flush=True)
        return True
    print(f"max parameter difference: {max(rel):.2e} relative\ngoals at {n:,}: {verdicts}\n")
    return all(checks.values())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="customers per run")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--skip-analyst",
        action="store_true",
        help="time only our pipeline (no pandas.read_sql + lifetimes run, no lifetimes needed)",
    )
    parser.add_argument("--child", choices=("ours", "lifetimes"), help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        work = child_ours if args.child == "ours" else child_lifetimes
        print(json.dumps(work(args.client_id)), flush=True)
        return 0
    if not args.skip_analyst:
        _ensure_lifetimes(argv)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from clients.services import client_create

    if connection.vendor != "postgresql":
        sys.exit("bench/scoring.py measures PostgreSQL: run it via scripts/with_test_services.sh")
    call_command("migrate", verbosity=0)
    print(machine())
    if not args.skip_analyst:
        print(versions())
    print(
        f"data: BG/NBD per day {TRUE_BGNBD}, Gamma-Gamma {TRUE_GG}; as of {AS_OF}, "
        f"{HISTORY_DAYS} days of history; seed {args.seed}\n",
        flush=True,
    )
    met = True
    for n in (int(s) for s in args.sizes.split(",") if s):
        client = client_create(
            name=f"Bench scoring {n}", tier_code="enterprise", time_zone=TIME_ZONE
        )
        counts = load(client, n, args.seed)
        connection.close()  # the children open their own connections
        ours = [run_child("ours", client.pk), run_child("ours", client.pk)]
        theirs = None if args.skip_analyst else run_child("lifetimes", client.pk)
        met &= report(n, counts, ours, theirs)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
