"""Recommendations (next best offer) benchmark: hit rate@5 against best sellers, and compute time.

    .venv/bin/python bench/recommendations.py [--sizes 10000,100000] [--seed 2026]
        [--products 2000] [--bundle-sizes 3-6] [--bundle-take 2-3] [--db]

(or ``make bench-recommendations``, which adds ``--db`` against a throwaway PostgreSQL).

Data, drawn with a fixed seed (no database needed): a catalogue of ``--products`` products
with Zipf-like popularity (weight 1/(rank+10)); 60 % of them are grouped into bundles of 3-6
products (``--bundle-sizes``) that are bought together (the planted structure). Each customer
has two favourite bundles (drawn by the bundles' popularity) and 1 + Poisson(3) orders spread
over a year; an order is a bundle order with probability 0.6 (2-3 products of one favourite
bundle, ``--bundle-take``, plus Poisson(0.6) popular products as noise), otherwise
1 + Poisson(1) popular products: about ten order lines per customer. The ratio below depends on
how strong the planted structure is (small bundles leave little to discover after a few orders).

1. Hit rate@5 on a time split: orders before day 300 train (what the nightly run would see),
   the last 65 days test. For every customer with a train order and a test purchase of a
   product they had not bought before, a hit is one of the 5 recommended products among those
   test purchases. The co-purchase recommender (``segments.recommend.recommend``) against its
   own fallback alone (``co_purchase=False``: the best sellers of the 90 days before the split
   by quantity, minus what the customer has), side by side with the ratio.
2. Compute time of ``recommend`` on every order line, for every customer, N = 5, at each size,
   with the peak RSS of this process.
3. With ``--db`` (PostgreSQL from ``DATABASE_URL``, migrated): the scoring run's step end to end
   at each size: the client's orders with these items loaded by COPY (not timed), then the
   order lines extracted from ``Order.items`` (``load_order_lines``), the recommendations
   computed with names and prices (``recommendations_compute``) and written by COPY
   (``write_recommendations``).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from measure import PeakRss  # noqa: E402

from segments.recommend import recommend  # noqa: E402

DAYS = 365
SPLIT_DAY = 300
START = pd.Timestamp("2025-06-01")
N = 5
BUNDLE_SHARE = 0.6
BUNDLE_ORDER_SHARE = 0.6
BUNDLE_SIZES = (3, 6)  # products in a bundle, default
BUNDLE_TAKE = (2, 3)  # products of one bundle in one order, default


def machine(db: bool) -> str:
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    cpu = "unknown cpu"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import scipy

    text = (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB, "
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"scipy {scipy.__version__}"
    )
    if db:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("SELECT version()")
            text += f", {cur.fetchone()[0].split(' on ')[0]}"
    return text


# --------------------------------------------------------------------------------------------
# Data


def generate(
    n: int,
    products: int,
    seed: int,
    bundle_sizes: tuple[int, int] = BUNDLE_SIZES,
    bundle_take: tuple[int, int] = BUNDLE_TAKE,
) -> pd.DataFrame:
    """Order lines (order_id, customer_id, placed_at, product, qty) of ``n`` customers."""
    rng = np.random.default_rng(seed)
    weight = 1.0 / (np.arange(products) + 10.0)
    popularity = rng.permutation(products)  # product ids in popularity order
    p_weight = np.empty(products)
    p_weight[popularity] = weight / weight.sum()

    # Bundles: a random 60 % of the catalogue cut into groups of ``bundle_sizes``.
    members = rng.permutation(products)[: int(products * BUNDLE_SHARE)]
    sizes = rng.integers(bundle_sizes[0], bundle_sizes[1] + 1, len(members))
    ends = np.cumsum(sizes)
    sizes, ends = sizes[ends <= len(members)], ends[ends <= len(members)]
    starts = ends - sizes
    b_weight = p_weight[members[starts]]
    b_weight /= b_weight.sum()
    favourite = rng.choice(len(sizes), size=(n, 2), p=b_weight)

    orders_per = 1 + rng.poisson(3.0, n)
    owner = np.repeat(np.arange(n), orders_per)
    m = len(owner)
    day = rng.uniform(0, DAYS, m)
    bundle_order = rng.random(m) < BUNDLE_ORDER_SHARE

    # Bundle lines: ``bundle_take`` products of one favourite bundle, from a random place in it.
    bo = np.flatnonzero(bundle_order)
    bundle = favourite[owner[bo], rng.integers(0, 2, len(bo))]
    size = sizes[bundle]
    least = np.minimum(size, bundle_take[0])
    most = np.minimum(size, bundle_take[1])
    take = least + (rng.random(len(bo)) * (most - least + 1)).astype(np.int64)
    offset = (rng.random(len(bo)) * size).astype(np.int64)
    b_order = np.repeat(bo, take)
    within = np.arange(len(b_order)) - np.repeat(np.cumsum(take) - take, take)
    b_product = members[
        np.repeat(starts[bundle], take) + (np.repeat(offset, take) + within) % np.repeat(size, take)
    ]

    # Noise: popular products.
    noise = np.where(bundle_order, rng.poisson(0.6, m), 1 + rng.poisson(1.0, m))
    n_order = np.repeat(np.arange(m), noise)
    n_product = rng.choice(products, size=len(n_order), p=p_weight)

    order = np.concatenate([b_order, n_order])
    product = np.concatenate([b_product, n_product])
    keep = np.unique(order.astype(np.int64) * products + product, return_index=True)[1]
    order, product = order[keep], product[keep]
    names = np.array([f"SKU-{k:06d}" for k in range(products)], dtype=object)
    seconds = (day[order] * 86400).astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "order_id": order,
            "customer_id": owner[order],
            "placed_at": START.to_datetime64() + seconds,
            "product": names[product],
            "qty": 1 + rng.poisson(0.3, len(order)),
        }
    )


# --------------------------------------------------------------------------------------------
# 1. Hit rate on a time split


def hit_rate(lines: pd.DataFrame) -> dict[str, float]:
    split = START + pd.Timedelta(days=SPLIT_DAY)
    train = lines[lines["placed_at"] < split]
    test = lines[lines["placed_at"] >= split]
    owned = train[["customer_id", "product"]].drop_duplicates()
    bought = test[["customer_id", "product"]].drop_duplicates()
    new = bought.merge(owned, how="left", indicator=True)
    new = new[new["_merge"] == "left_only"].drop(columns="_merge")
    evaluated = np.intersect1d(owned["customer_id"].unique(), new["customer_id"].unique())
    new = new[new["customer_id"].isin(evaluated)]

    def rate(result: pd.DataFrame) -> float:
        hits = result.merge(new, on=["customer_id", "product"])["customer_id"].nunique()
        return hits / len(evaluated)

    t = time.perf_counter()
    ours = recommend(train, customers=evaluated, now=split, n=N)
    seconds = time.perf_counter() - t
    base = recommend(train, customers=evaluated, now=split, n=N, co_purchase=False)
    return {
        "customers": len(evaluated),
        "train_lines": len(train),
        "co_purchase": rate(ours),
        "best_sellers": rate(base),
        "co_share": float((ours["source"] == "co_purchase").mean()),
        "seconds": seconds,
    }


# --------------------------------------------------------------------------------------------
# 3. The scoring run's step on PostgreSQL


def db_step(lines: pd.DataFrame, n: int) -> dict[str, float]:
    from django.db import connection

    from agency import pgcopy
    from clients.models import Customer, Order
    from clients.services import client_create
    from segments.models import CustomerRecommendation, ScoringRun
    from segments.services import recommendations_compute, write_recommendations

    client = client_create(name=f"bench-recommendations-{n}", tier_code="advanced", source="bench")
    now = pd.Timestamp.now(tz="UTC").floor("s")
    stamp = now.to_pydatetime()
    with connection.cursor() as cursor:
        columns = ["client_id", "external_id", "email", "phone", "first_name", "last_name"]
        columns += ["city", "attributes", "first_seen", "source", "created_at", "updated_at"]
        with pgcopy.copy_in(cursor, Customer._meta.db_table, columns) as copy:
            for k in range(n):
                copy.write_row(
                    (client.pk, f"C{k}", "", "", "", "", "", "{}", stamp, "", stamp, stamp)
                )
        cursor.execute(
            f"SELECT external_id, id FROM {Customer._meta.db_table} WHERE client_id = %s",  # noqa: S608
            [client.pk],
        )
        ids = dict(cursor.fetchall())
    customer_pk = np.array([ids[f"C{k}"] for k in range(n)], dtype=np.int64)
    # Shift the year to end now (the 90-day window is counted back from the run's date).
    shift = (now.tz_localize(None) - (START + pd.Timedelta(days=DAYS))).to_timedelta64()
    item = (
        '{"sku": "'
        + lines["product"]
        + '", "name": "Товар '
        + lines["product"]
        + '", "qty": '
        + lines["qty"].astype(str)
        + ', "price": "990.00"}'
    )
    items = "[" + item.groupby(lines["order_id"].to_numpy(), sort=True).agg(", ".join) + "]"
    first = lines.groupby("order_id", sort=True)[["customer_id", "placed_at"]].first()
    columns = ["client_id", "external_id", "customer_id", "placed_at", "amount", "status"]
    columns += ["channel", "items", "created_at", "updated_at"]
    with connection.cursor() as cursor:
        with pgcopy.copy_in(cursor, Order._meta.db_table, columns) as copy:
            for order_id, customer, placed, text in zip(
                first.index.tolist(),
                customer_pk[first["customer_id"].to_numpy()].tolist(),
                (first["placed_at"] + shift).dt.tz_localize("UTC").dt.to_pydatetime().tolist(),
                items.tolist(),
                strict=True,
            ):
                copy.write_row(
                    (client.pk, f"O{order_id}", customer, placed, "1000", "paid", "", text)
                    + (stamp, stamp)
                )
        cursor.execute(f"ANALYZE {Order._meta.db_table}")  # noqa: S608
    run = ScoringRun.objects.create(client=client, source="cli", status="succeeded")
    as_of = now.tz_convert(client.time_zone).date()
    gc.collect()
    with PeakRss() as rss:
        t = time.perf_counter()
        products, summary, seconds = recommendations_compute(
            client=client, customers=np.sort(customer_pk), as_of=as_of, n=N
        )
        w = time.perf_counter()
        write_recommendations(client=client, run=run, products=products)
        seconds["recommend_write"] = time.perf_counter() - w
        seconds["total"] = time.perf_counter() - t
    written = CustomerRecommendation.objects.for_client(client).count()
    assert written == summary["customers"], (written, summary)
    return {**seconds, "rows": written, "peak_mib": rss.delta_mib}


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100000", help="customers, comma-separated")
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--bundle-sizes", default="3-6", help="products in a bundle (planted structure), lo-hi"
    )
    parser.add_argument("--bundle-take", default="2-3", help="of one bundle in an order, lo-hi")
    parser.add_argument("--db", action="store_true", help="also the scoring run's step on PG")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    bundle_sizes = tuple(int(v) for v in args.bundle_sizes.split("-"))
    bundle_take = tuple(int(v) for v in args.bundle_take.split("-"))
    if args.db:
        import django

        django.setup()
    print(f"machine: {machine(args.db)}")
    print(
        f"data: {args.products} products, 60 % in bundles of {args.bundle_sizes} products "
        f"({args.bundle_take} of one bundle in a bundle order, {BUNDLE_ORDER_SHARE:.0%} of "
        f"orders), popular products as noise; seed {args.seed}; N = {N}"
    )
    for n in sizes:
        lines = generate(n, args.products, args.seed, bundle_sizes, bundle_take)
        customers = lines["customer_id"].nunique()
        print(f"\n== {n:,} customers, {len(lines):,} order lines, {customers:,} with orders")
        h = hit_rate(lines)
        ratio = h["co_purchase"] / h["best_sellers"] if h["best_sellers"] else float("inf")
        print(
            f"hit rate@{N} (train before day {SPLIT_DAY}, test the last {DAYS - SPLIT_DAY} days, "
            f"{h['customers']:,} customers with a new test purchase):"
        )
        print(f"  co-purchase (+ best-seller fill)  {h['co_purchase']:7.2%}")
        print(f"  best sellers of 90 days           {h['best_sellers']:7.2%}")
        print(
            f"  ratio                             {ratio:7.2f}x  "
            f"({h['co_share']:.0%} of the slots from co-purchase; "
            f"{h['train_lines']:,} train lines in {h['seconds']:.2f} s)"
        )
        gc.collect()
        with PeakRss() as rss:
            t = time.perf_counter()
            result = recommend(lines, now=lines["placed_at"].max() + pd.Timedelta(seconds=1), n=N)
            seconds = time.perf_counter() - t
        print(
            f"compute, all {customers:,} customers x {N}: {seconds:.2f} s "
            f"({len(lines) / seconds:,.0f} lines/s, {len(result):,} rows), "
            f"peak RSS +{rss.delta_mib:.0f} MiB"
        )
        del result
        if args.db:
            d = db_step(lines, n)
            print(
                f"scoring-run step on PostgreSQL: extract {d['recommend_extract']:.2f} s, "
                f"compute with names {d['recommend']:.2f} s, write {d['recommend_write']:.2f} s "
                f"({d['rows']:,} rows), total {d['total']:.2f} s, peak RSS +{d['peak_mib']:.0f} MiB"
            )


if __name__ == "__main__":
    main()
