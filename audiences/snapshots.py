"""Who leaves the platform, as a snapshot of hashed identifiers, and the files built from it.

Export set = open members of the audience's segment
             ∩ current consent for ``ad_audiences`` (``consent.selectors``, nothing else)
             − members of the audience's suppression segments
             − erased people.
Members are streamed (a server-side cursor on PostgreSQL), classified, hashed
(``audiences.hashing``) and written to :class:`AudienceSnapshotItem` in chunks (COPY on
PostgreSQL), so memory stays flat whatever the audience size. Files for the platforms and the
diffs between two snapshots are streamed out of the database in order into temporary files.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef

from clients.models import Customer
from consent.selectors import customers_with_consent_flag
from segments.models import SegmentMembership

from .hashing import EMAIL, KIND_NAMES, PHONE, hasher_for, platform_value
from .models import Audience, AudienceSnapshot, AudienceSnapshotItem

CONSENT_PURPOSE = "ad_audiences"

CHUNK = 20_000
KINDS_BY_IDENTIFIERS = {
    Audience.Identifiers.EMAIL: (EMAIL,),
    Audience.Identifiers.PHONE: (PHONE,),
    Audience.Identifiers.EMAIL_PHONE: (EMAIL, PHONE),
}


@dataclass
class ExportCounts:
    members: int = 0
    held_back_erased: int = 0
    held_back_consent: int = 0
    suppressed: int = 0
    no_identifier: int = 0
    exported: int = 0
    per_kind: dict[int, int] = field(default_factory=dict)


def audience_kinds(audience: Audience) -> tuple[int, ...]:
    return KINDS_BY_IDENTIFIERS[audience.identifiers]


def export_candidates(audience: Audience):
    """The audience's segment members with what decides their fate, one row each:
    (customer id, email, phone, erased, consent granted, suppressed)."""
    client_id = audience.client_id
    open_members = SegmentMembership.objects.for_client(client_id).filter(left_at__isnull=True)
    members = Customer.objects.for_client(client_id).filter(
        Exists(open_members.filter(segment_id=audience.segment_id, customer_id=OuterRef("pk")))
    )
    suppression_ids = audience.suppression_segment_ids()
    suppressed = Exists(
        open_members.filter(segment_id__in=suppression_ids or [0], customer_id=OuterRef("pk"))
    )
    return (
        customers_with_consent_flag(members, CONSENT_PURPOSE)
        .annotate(suppressed=suppressed)
        .order_by()
        .values_list("pk", "email", "phone", "erased_at", "consent_granted", "suppressed")
    )


def _classified(
    rows: Iterable[tuple], kinds: tuple[int, ...], hashing: str, counts: ExportCounts
) -> Iterator[tuple[int, str]]:
    """Count every member into exactly one bucket; yield (kind, hashed value) for exported."""
    hash_value = hasher_for(hashing)
    for _pk, email, phone, erased_at, granted, suppressed in rows:
        counts.members += 1
        if erased_at is not None:
            counts.held_back_erased += 1
            continue
        if not granted:
            counts.held_back_consent += 1
            continue
        if suppressed:
            counts.suppressed += 1
            continue
        values = []
        for kind in kinds:
            value = platform_value(kind, email if kind == EMAIL else phone)
            if value:
                values.append((kind, hash_value(value)))
        if not values:
            counts.no_identifier += 1
            continue
        counts.exported += 1
        yield from values


def _write_items(snapshot: AudienceSnapshot, items: list[tuple[int, str]]) -> None:
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(AudienceSnapshotItem._meta.db_table)
        prefix = f"{snapshot.client_id}\t{snapshot.pk}\t"
        body = "".join(f"{prefix}{kind}\t{value}\n" for kind, value in items)
        with connection.cursor() as cursor:
            with cursor.copy(
                f"COPY {table} (client_id, snapshot_id, kind, value) FROM STDIN"  # noqa: S608
            ) as copy:
                copy.write(body)
        return
    AudienceSnapshotItem.objects.bulk_create(
        [
            AudienceSnapshotItem(client_id=snapshot.client_id, snapshot=snapshot, kind=k, value=v)
            for k, v in items
        ],
        batch_size=5000,
    )


def snapshot_build(
    audience: Audience,
    snapshot: AudienceSnapshot,
    *,
    hashing: str,
    progress: Callable[[int], None] | None = None,
) -> ExportCounts:
    """Fill ``snapshot`` with the export set; return who was held back and why.

    Two customers sharing an identifier give two items; every read of a snapshot is DISTINCT,
    so the platforms see each identifier once."""
    counts = ExportCounts()
    kinds = audience_kinds(audience)
    AudienceSnapshotItem.objects.filter(snapshot=snapshot).delete()
    batch: list[tuple[int, str]] = []
    rows = export_candidates(audience).iterator(chunk_size=CHUNK)
    with transaction.atomic():
        for item in _classified(rows, kinds, hashing, counts):
            batch.append(item)
            if len(batch) >= CHUNK:
                _write_items(snapshot, batch)
                batch.clear()
                if progress:
                    progress(counts.members)
        if batch:
            _write_items(snapshot, batch)
        distinct = dict(
            AudienceSnapshotItem.objects.filter(snapshot=snapshot)
            .values("kind")
            .annotate(n=Count("value", distinct=True))
            .values_list("kind", "n")
        )
        counts.per_kind = {kind: distinct.get(kind, 0) for kind in kinds}
        snapshot.size = sum(counts.per_kind.values())
        snapshot.counts = {KIND_NAMES[k]: n for k, n in counts.per_kind.items()}
        snapshot.complete = True
        snapshot.save(update_fields=["size", "counts", "complete"])
    if connection.vendor == "postgresql":
        # Fresh statistics: with the table's old ones the planner (and a server-side cursor's
        # fast-start preference) picked nested loops for the differences, 7 s at 10k members.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {_ITEMS}")  # noqa: S608
    return counts


def _stream(sql: str, params: list) -> Iterator[tuple[int, str]]:
    """Rows of ``sql`` in chunks; a server-side cursor on PostgreSQL keeps memory flat."""
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK):
            yield from rows


_ITEMS = connection.ops.quote_name(AudienceSnapshotItem._meta.db_table)


def snapshot_items(snapshot_id: int, kinds: Iterable[int]) -> Iterator[tuple[int, str]]:
    kinds = list(kinds)
    marks = ", ".join(["%s"] * len(kinds))
    return _stream(
        f"SELECT DISTINCT kind, value FROM {_ITEMS} "  # noqa: S608
        f"WHERE snapshot_id = %s AND kind IN ({marks}) "
        "ORDER BY kind, value",
        [snapshot_id, *kinds],
    )


def _difference_sql(snapshot_id: int, other_id: int, kinds: Iterable[int]) -> tuple[str, list]:
    kinds = list(kinds)
    marks = ", ".join(["%s"] * len(kinds))
    sql = (
        f"SELECT DISTINCT n.kind, n.value FROM {_ITEMS} n WHERE n.snapshot_id = %s "  # noqa: S608
        f"AND n.kind IN ({marks}) AND NOT EXISTS (SELECT 1 FROM {_ITEMS} o "
        "WHERE o.snapshot_id = %s AND o.kind = n.kind AND o.value = n.value)"
    )
    return sql, [snapshot_id, *kinds, other_id]


def snapshot_difference(
    snapshot_id: int, other_id: int, kinds: Iterable[int]
) -> Iterator[tuple[int, str]]:
    """Items of ``snapshot_id`` that ``other_id`` lacks (added = new − old, removed = old − new)."""
    sql, params = _difference_sql(snapshot_id, other_id, kinds)
    return _stream(f"{sql} ORDER BY n.kind, n.value", params)


def snapshot_difference_count(snapshot_id: int, other_id: int, kinds: Iterable[int]) -> int:
    """How many items :func:`snapshot_difference` would give, counted by the database."""
    sql, params = _difference_sql(snapshot_id, other_id, kinds)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS difference", params)  # noqa: S608
        return cursor.fetchone()[0]


class ExportFile:
    """A temporary file on disk (uploads stream from it), removed when closed."""

    def __init__(self, suffix: str) -> None:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by close()
            "w", suffix=suffix, delete=False, encoding="utf-8", newline=""
        )
        self.path = Path(handle.name)
        self._handle: io.TextIOBase | None = handle
        self.lines = 0

    def write_lines(self, lines: Iterable[str]) -> None:
        assert self._handle is not None
        for line in lines:
            self._handle.write(line)
            self._handle.write("\n")
            self.lines += 1

    def finish(self) -> ExportFile:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        return self

    def close(self) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def yandex_csv(items: Iterable[tuple[int, str]], kinds: tuple[int, ...]) -> ExportFile:
    """Yandex Audiences CRM CSV: a header of the audience's columns, one identifier per row
    (a row needs an email or a phone, not both)."""
    columns = [KIND_NAMES[kind] for kind in kinds]
    export = ExportFile(".csv")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    writer.writerow(columns)
    export.write_lines([buffer.getvalue()])
    position = {kind: index for index, kind in enumerate(kinds)}
    empty = [""] * len(kinds)

    def rows() -> Iterator[str]:
        for kind, value in items:
            row = list(empty)
            row[position[kind]] = value
            yield ",".join(row)

    export.write_lines(rows())
    export.lines -= 1  # the header is not a data row
    return export.finish()


def plain_lines(items: Iterable[tuple[int, str]], extra: Iterable[str] = ()) -> ExportFile:
    """VK Ads / myTarget users list: one value per line."""
    export = ExportFile(".txt")
    export.write_lines(value for _kind, value in items)
    export.write_lines(extra)
    return export.finish()
