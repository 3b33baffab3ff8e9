"""Next best offer: per customer, up to N products bought together with what they bought.

Pure computation (numpy, pandas, scipy.sparse; no Django). ``segments.services`` feeds it the
order lines of a client's paid orders in the nightly scoring run and writes what it returns;
``bench/recommendations.py`` measures it on generated data.

The rules, one place:

- **Bought together** means *in the same order*: two products co-occur once per order that
  holds both (however many of each). The co-purchase count of a pair is the number of such
  orders, over the whole history given (every customer's orders).
- A customer's **score** of a product is the sum, over the distinct products the customer has
  bought, of the pair's co-purchase count. Products the customer has bought are never
  recommended. Each product's co-purchase list is cut to its ``neighbours`` most co-purchased
  products (default 50, ties as below), so that a catalogue where everything was once bought
  with everything does not make every customer score every product; with ``n`` ≤ 50 this
  changes a ranking only in the long tail.
- The products with the highest scores come first, up to ``n``; equal scores are ordered by
  the best-seller order below (so the more popular product wins a tie), then by product id.
- **Fallback**: a customer with fewer than ``n`` co-purchase products (a new customer, one
  whose products were never bought with anything) gets the rest from the **best sellers of the
  last** ``best_seller_days`` (90) days before ``now``: products ranked by *quantity* sold
  (the sum of ``qty``), ties by the number of orders holding them, then by product id; the
  customer's own products and those already recommended are skipped. Products not sold in that
  window are never a fallback, so a client with no recent sales gives co-purchase products only.
- Lines placed at or after ``now`` are ignored (a run as of an earlier date sees what it would
  have seen then).

Everything is set-based: one sparse product × product matrix, one sparse customer × product
product of it, sorting to take the top N per customer, no Python loop per customer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

#: What :func:`recommend` takes: one row per order line.
LINE_COLUMNS = ("order_id", "customer_id", "placed_at", "product", "qty")

#: What :func:`recommend` returns: one row per recommendation, by customer then rank.
RESULT_COLUMNS = ("customer_id", "rank", "product", "score", "source")

CO_PURCHASE = "co_purchase"
BEST_SELLER = "best_seller"
SOURCES = (CO_PURCHASE, BEST_SELLER)  # the categories of ``source``, in this order


def empty_result() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": np.empty(0, dtype=np.int64),
            "rank": np.empty(0, dtype=np.int64),
            "product": np.empty(0, dtype=object),
            "score": np.empty(0, dtype=np.int64),
            "source": pd.Categorical.from_codes(np.empty(0, dtype=np.int8), categories=SOURCES),
        }
    )


def _clean(lines: pd.DataFrame, now: pd.Timestamp | None) -> pd.DataFrame:
    missing = set(LINE_COLUMNS) - set(lines.columns)
    if missing:
        raise ValueError(f"order lines lack the columns {sorted(missing)}")
    frame = lines.loc[:, list(LINE_COLUMNS)]
    product = frame["product"]
    keep = product.notna().to_numpy() & (product.astype(str).str.strip() != "").to_numpy()
    if now is not None:
        keep &= (frame["placed_at"] < now).to_numpy()
    if not keep.all():
        frame = frame[keep]
    return frame


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (a sort: faster than ``np.unique``'s hashing here)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _popularity(
    pcode: np.ndarray, ocode: np.ndarray, qty: np.ndarray, in_window: np.ndarray, p: int
) -> tuple[np.ndarray, np.ndarray]:
    """(best sellers in rank order, every product's position in the best-seller order)."""
    window_qty = np.bincount(pcode[in_window], weights=qty[in_window], minlength=p)
    # Orders holding the product within the window (an order counts once per product).
    pairs = _distinct(ocode[in_window].astype(np.int64) * p + pcode[in_window])
    window_orders = np.bincount(pairs % p, minlength=p) if p else np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(p), -window_orders, -window_qty))
    position = np.empty(p, dtype=np.int64)
    position[order] = np.arange(p)
    best = order[: int((window_qty > 0).sum())]
    return best, position


def _cooccurrence(ocode: np.ndarray, pcode: np.ndarray, n_orders: int, p: int) -> sparse.csr_array:
    """Product × product: the number of orders holding both (diagonal empty)."""
    baskets = sparse.csr_array(
        (np.ones(len(ocode), dtype=np.int32), (ocode, pcode)), shape=(n_orders, p)
    )
    baskets.sum_duplicates()
    baskets.data[:] = 1  # an order holds a product or not, whatever the lines and quantities
    pairs = (baskets.T @ baskets).tocoo()
    off = pairs.row != pairs.col
    return sparse.csr_array((pairs.data[off], (pairs.row[off], pairs.col[off])), shape=(p, p))


def _top_per_row(
    rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, position: np.ndarray, k: int
) -> np.ndarray:
    """Indices of the ``k`` best entries of each row (score down, best-seller position up),
    in (row, rank) order."""
    if not len(rows):
        return np.empty(0, dtype=np.int64)
    # One int64 key per entry, (row, score down, position up), sorted once: several times
    # faster than a three-key lexsort. Rows are taken in blocks small enough for the key to
    # fit (one block but for huge catalogues and counts).
    rows = rows.astype(np.int64)
    scores = scores.astype(np.int64)
    if (np.diff(rows) < 0).any():  # not grouped by row: the general way
        order = np.lexsort((position[cols], -scores, rows))
    else:
        top = int(scores.max())
        within = (top - scores) * len(position) + position[cols]
        span = (top + 1) * len(position)
        block = max(1, (1 << 62) // span)
        first, last = int(rows[0]), int(rows[-1])
        edges = [first + k * block for k in range((last - first) // block + 2)]
        bounds = np.searchsorted(rows, np.array(edges, dtype=np.int64))
        order = np.empty(len(rows), dtype=np.int64)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if hi > lo:
                key = (rows[lo:hi] - rows[lo]) * span + within[lo:hi]
                order[lo:hi] = lo + np.argsort(key)
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[np.arange(len(order)) - first < k]


def _prune(pairs: sparse.csr_array, position: np.ndarray, k: int) -> sparse.csr_array:
    """Each product's ``k`` most co-purchased products."""
    coo = pairs.tocoo()
    keep = _top_per_row(coo.row, coo.col, coo.data, position, k)
    return sparse.csr_array(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=pairs.shape, dtype=np.int64
    )


def recommend(
    lines: pd.DataFrame,
    *,
    customers: Sequence[int] | np.ndarray | None = None,
    now: dt.datetime | pd.Timestamp | np.datetime64 | None = None,
    n: int = 5,
    best_seller_days: int = 90,
    neighbours: int = 50,
    co_purchase: bool = True,
) -> pd.DataFrame:
    """Up to ``n`` products per customer (the rules are in the module docstring).

    ``lines``: one row per order line, columns :data:`LINE_COLUMNS`: ``order_id`` (any
    hashable), ``customer_id`` (int), ``placed_at`` (datetime64, in the same zone as ``now``),
    ``product`` (the product's id, e.g. the SKU; empty or missing lines are skipped), ``qty``
    (a positive number; missing is 1). ``customers``: whom to recommend to (default: every
    customer with a line); a customer without lines gets best sellers. ``now``: the end of the
    data (default: just after the latest line). ``co_purchase=False``: best sellers only (the
    baseline ``bench/recommendations.py`` compares with).

    Returns :data:`RESULT_COLUMNS`, sorted by customer then rank: ``rank`` 1..n, ``product``,
    ``score`` (the co-purchase score; 0 for a best seller), ``source`` (categorical,
    :data:`CO_PURCHASE` or :data:`BEST_SELLER`). The same input gives the same output, ties
    included.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if neighbours < 1:
        raise ValueError("neighbours must be at least 1")
    now_ts = None if now is None else pd.Timestamp(now)
    frame = _clean(lines, now_ts)
    if customers is None:
        universe = _distinct(frame["customer_id"].to_numpy(dtype=np.int64))
    else:
        universe = _distinct(np.asarray(customers, dtype=np.int64))
    if not len(frame) or not len(universe):
        return empty_result()

    pcode, products = pd.factorize(frame["product"].astype(str), sort=True)
    p = len(products)
    ocode, orders = pd.factorize(frame["order_id"])
    placed = frame["placed_at"].to_numpy()
    if now_ts is None:
        now_ts = pd.Timestamp(placed.max()) + pd.Timedelta(microseconds=1)
    start = (now_ts - pd.Timedelta(days=best_seller_days)).to_datetime64()
    qty = pd.to_numeric(frame["qty"], errors="coerce").fillna(1).to_numpy(dtype=np.float64)
    qty = np.where(qty > 0, qty, 1.0)
    best, position = _popularity(pcode, ocode, qty, placed >= start, p)

    # Co-purchase counts, each product's list cut to its ``neighbours`` best.
    if co_purchase:
        pairs = _prune(_cooccurrence(ocode, pcode, len(orders), p), position, neighbours)

    # What each customer of the universe owns (lines of others count only in the pairs).
    ccode = np.searchsorted(universe, frame["customer_id"].to_numpy(dtype=np.int64))
    known = (ccode < len(universe)) & (
        universe[np.minimum(ccode, len(universe) - 1)] == frame["customer_id"].to_numpy()
    )
    owned = sparse.csr_array(
        (np.ones(int(known.sum()), dtype=np.int64), (ccode[known], pcode[known])),
        shape=(len(universe), p),
    )
    owned.sum_duplicates()
    owned.data[:] = 1

    if co_purchase:
        co_rows, co_cols, co_scores = _co_purchase_top(owned, pairs, position, n)
    else:
        co_rows = co_cols = co_scores = np.empty(0, dtype=np.int64)

    fill_rows, fill_cols = _fill(
        universe_size=len(universe),
        p=p,
        n=n,
        best=best,
        co_rows=co_rows,
        co_cols=co_cols,
        owned=owned,
    )
    all_rows = np.concatenate([co_rows, fill_rows])
    all_cols = np.concatenate([co_cols, fill_cols])
    all_scores = np.concatenate([co_scores, np.zeros(len(fill_rows), dtype=np.int64)])
    source = np.concatenate(
        [np.zeros(len(co_rows), dtype=np.int8), np.ones(len(fill_rows), dtype=np.int8)]
    )
    if not len(all_rows):
        return empty_result()
    # Co-purchase first, best sellers after, each in its order: a stable sort by customer.
    order = np.argsort(all_rows, kind="stable")
    all_rows, all_cols = all_rows[order], all_cols[order]
    all_scores, source = all_scores[order], source[order]
    starts = np.flatnonzero(np.r_[True, all_rows[1:] != all_rows[:-1]])
    rank = np.arange(len(all_rows)) - np.repeat(starts, np.diff(np.r_[starts, len(all_rows)])) + 1
    return pd.DataFrame(
        {
            "customer_id": universe[all_rows],
            "rank": rank.astype(np.int64),
            "product": np.asarray(products, dtype=object)[all_cols],
            "score": all_scores,
            "source": pd.Categorical.from_codes(source, categories=SOURCES),
        }
    )


#: Candidates (customer, product) scored at once: customers are taken in blocks of about this
#: many, so that memory stays bounded whatever the number of customers.
BLOCK_CANDIDATES = 4_000_000


def _co_purchase_top(
    owned: sparse.csr_array, pairs: sparse.csr_array, position: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer row, product, score) of each customer's ``n`` best co-purchase products, in
    (customer, rank) order; customers in blocks of about :data:`BLOCK_CANDIDATES` candidates
    (a bound from the neighbour lists' lengths)."""
    bound = owned @ np.diff(pairs.indptr).astype(np.int64)
    block_of = np.cumsum(bound) // BLOCK_CANDIDATES  # non-decreasing over the customers
    edges = np.r_[0, np.flatnonzero(np.diff(block_of)) + 1, owned.shape[0]]
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        block = owned[lo:hi]
        scores = block @ pairs
        scores = (scores - scores * block).tocoo()  # never what the customer has
        live = scores.data > 0
        rows, cols, values = scores.row[live], scores.col[live], scores.data[live]
        del scores
        top = _top_per_row(rows, cols, values, position, n)
        found.append((rows[top].astype(np.int64) + lo, cols[top], values[top].astype(np.int64)))
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))  # type: ignore[return-value]


def _fill(
    *,
    universe_size: int,
    p: int,
    n: int,
    best: np.ndarray,
    co_rows: np.ndarray,
    co_cols: np.ndarray,
    owned: sparse.csr_array,
) -> tuple[np.ndarray, np.ndarray]:
    """Best sellers for the places co-purchase left empty: (customer row, product) pairs in
    (customer, best-seller rank) order, skipping what each customer owns or already has.

    The first ``width`` best sellers are tried for every customer short of ``n``; customers
    still short (they own or were given many of them) try twice as many, until the list ends.
    """
    need = n - np.bincount(co_rows, minlength=universe_size)
    taken = _distinct(
        np.concatenate(
            [
                co_rows.astype(np.int64) * p + co_cols,
                owned.tocoo().row.astype(np.int64) * p + owned.tocoo().col,
            ]
        )
    )
    out_rows: list[np.ndarray] = []
    out_cols: list[np.ndarray] = []
    short = np.flatnonzero(need > 0)
    width = min(len(best), 2 * n)
    while len(short) and width:
        rows = np.repeat(short, width)
        cols = np.tile(best[:width], len(short))
        keys = rows.astype(np.int64) * p + cols
        free = ~_contains(taken, keys)
        rows, cols = rows[free], cols[free]
        starts = np.searchsorted(rows, short)
        place = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        fits = place < need[rows]
        got = np.bincount(rows[fits], minlength=universe_size)[short]
        done = (got >= need[short]) | (width >= len(best))
        chosen = np.isin(rows, short[done]) & fits
        out_rows.append(rows[chosen])
        out_cols.append(cols[chosen])
        short = short[~done]
        width = min(len(best), 2 * width)
    if not out_rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    rows, cols = np.concatenate(out_rows), np.concatenate(out_cols)
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def product_catalog(lines: pd.DataFrame) -> pd.DataFrame:
    """Each product's name and unit price as last seen in the orders, indexed by ``product`` (as
    text): the name of its latest line with a name, the price of its latest line with a price
    (latest by ``placed_at``, then ``order_id``; within one order, the greater value).

    ``lines``: columns ``product``, ``placed_at``, ``order_id``, ``name``, ``price`` (a number
    or missing). ``segments.services.load_order_lines`` applies the same rule in SQL."""
    frame = lines.loc[:, ["product", "placed_at", "order_id", "name", "price"]].copy()
    frame = frame[frame["product"].notna()]
    frame["product"] = frame["product"].astype(str)
    name = frame["name"].astype("string").str.strip()
    frame["name"] = name.where(name != "")
    frame["price"] = pd.to_numeric(frame["price"], errors="coerce")
    frame.loc[frame["price"] < 0, "price"] = np.nan
    found = {}
    for column in ("name", "price"):
        known = frame[frame[column].notna()].sort_values(["placed_at", "order_id", column])
        found[column] = known.groupby("product", sort=True)[column].last()
    out = pd.DataFrame(found, index=pd.Index(sorted(frame["product"].unique()), name="product"))
    out["name"] = out["name"].astype(object).where(out["name"].notna(), None)
    return out
