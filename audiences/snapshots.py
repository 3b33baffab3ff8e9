"""Who leaves the platform, as a snapshot of hashed identifiers, and the files built from it.

Export set = open members of the audience's segment
             ∩ current consent for ``ad_audiences`` (``consent.selectors``, nothing else)
             − members of the audience's suppression segments
             − people a higher app excludes (``audiences.exclusions``: a running trigger chain)
             − erased people
             − the audience's holdout (``audiences.holdout``: a control group, counted apart);
and of their identifier values, none that also belongs to a customer who withdrew
``ad_audiences``: when two customer records share an email, one record's withdrawal wins over the
other's grant (the same person, most likely; and the value is what the platform sees).

The database does the build (1M members in seconds): the members with what decides their
fate go into a temporary table (consent by ``consent.selectors.latest_consent_actions_sql``),
are counted into the run's buckets, and the exported ones are put in the platform format and
hashed (``audiences.hashing``, the one place), de-duplicated and sorted by one SELECT per kind.
Python only cuts that sorted stream into :class:`AudienceSnapshotChunk` rows.

Because every snapshot is stored sorted, a file is a concatenation of its chunks and the
difference between two snapshots is one streaming merge (:func:`sorted_difference`): memory
stays at a chunk or two whatever the audience size.

Every statement names the client's id: raw SQL does not pass through the tenant managers.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from agency import pgcopy
from clients.models import Customer
from consent.purposes import AUDIENCE_PURPOSE
from consent.selectors import latest_consent_actions_sql, withdrawn_customers_sql
from segments.models import SegmentMembership

from .exclusions import exclusions_sql
from .hashing import EMAIL, KIND_NAMES, PHONE, hashed_sql, platform_value_sql
from .holdout import candidates_hold_out, holdout_running
from .models import Audience, AudienceSnapshot, AudienceSnapshotChunk

# Sorts of a 1M-member snapshot stay in memory instead of spilling to disk (PostgreSQL).
WORK_MEM = "128MB"
KINDS_BY_IDENTIFIERS = {
    Audience.Identifiers.EMAIL: (EMAIL,),
    Audience.Identifiers.PHONE: (PHONE,),
    Audience.Identifiers.EMAIL_PHONE: (EMAIL, PHONE),
}
# What decides a member's fate, in the order the rules apply (the first that holds wins).
ERASED, NO_CONSENT, SUPPRESSED, EXPORTABLE = "erased", "consent", "suppressed", "export"
HELD_OUT = "holdout"  # exportable, but in the audience's control group (after the rules above)

_MEMBERSHIPS = connection.ops.quote_name(SegmentMembership._meta.db_table)
_CUSTOMERS = connection.ops.quote_name(Customer._meta.db_table)


@dataclass
class ExportCounts:
    members: int = 0
    held_back_erased: int = 0
    held_back_consent: int = 0
    suppressed: int = 0
    held_out: int = 0
    no_identifier: int = 0
    exported: int = 0
    per_kind: dict[int, int] = field(default_factory=dict)


def audience_kinds(audience: Audience) -> tuple[int, ...]:
    return KINDS_BY_IDENTIFIERS[audience.identifiers]


@contextlib.contextmanager
def _bulk_transaction():
    """A transaction whose sorts of whole snapshots fit in memory (PostgreSQL), without JIT: the
    build's statements run once, and compiling them cost more than it saved (the export query
    of 100k members: 0.3-0.5 s of JIT against ~0.5 s of execution)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
                cursor.execute("SET LOCAL jit = off")
        yield


def export_candidates_sql(audience: Audience) -> tuple[str, list]:
    """SQL of the audience's segment members with what decides their fate, one row each:
    ``(id, email, phone, fate)``: the platform values of both identifiers ('' when absent or
    withheld) and the first rule that holds back the person (ERASED, NO_CONSENT, SUPPRESSED) or
    EXPORTABLE.

    Per identifier, a withdrawal wins: a value (email, phone) that also belongs to a customer
    whose latest ``ad_audiences`` action is a withdrawal (any customer of the client, member or
    not) is withheld even when this member granted; a member left with no value of the
    audience's kinds because of it is held back for consent. Set-based: the customers who
    withdrew (``consent.selectors.withdrawn_customers_sql``, a few) give their values, the
    customers holding those values are found through the (client, email) and (client, phone)
    indexes (stored identifiers are normalised: equal stored values are equal platform values)
    and joined to the members by id, an anti-join on the value that costs no pass over the
    members' identifiers."""
    client_id = audience.client_id
    kinds = audience_kinds(audience)
    suppression_ids = [int(pk) for pk in audience.suppression_segment_ids()] or [0]
    now = timezone.now()
    latest, latest_params = latest_consent_actions_sql(
        client_id=client_id, purpose_code=AUDIENCE_PURPOSE, customers="members", at=now
    )
    withdrawn, withdrawn_params = withdrawn_customers_sql(
        client_id=client_id, purpose_code=AUDIENCE_PURPOSE, at=now
    )
    marks = ", ".join(["%s"] * len(suppression_ids))
    excluded = exclusions_sql(audience)
    excluded_sql = f" UNION SELECT customer_id FROM ({excluded[0]}) ex" if excluded else ""  # noqa: S608
    sharing = " UNION ALL ".join(
        f"SELECT o.id AS customer_id, {kind} AS kind "  # noqa: S608 - names built here
        f"FROM withdrawn x JOIN {_CUSTOMERS} w ON w.id = x.customer_id "
        f"JOIN {_CUSTOMERS} o ON o.client_id = w.client_id AND o.{KIND_NAMES[kind]} = "
        f"w.{KIND_NAMES[kind]} WHERE w.client_id = %s AND w.{KIND_NAMES[kind]} <> ''"
        for kind in kinds
    )
    flags = ", ".join(
        f"MAX(CASE WHEN kind = {kind} THEN 1 ELSE 0 END) AS {KIND_NAMES[kind]}" for kind in kinds
    )
    value, shown = {}, {}
    for kind in KIND_NAMES:
        value[kind] = platform_value_sql(kind, f"c.{KIND_NAMES[kind]}")
        shown[kind] = (
            f"CASE WHEN h.{KIND_NAMES[kind]} = 1 THEN '' ELSE {value[kind]} END"
            if kind in kinds
            else value[kind]
        )
    none_left = " AND ".join(f"({value[k]} = '' OR h.{KIND_NAMES[k]} = 1)" for k in kinds)
    # Each computed once: inlined, PostgreSQL could rank the withdrawals again for every
    # customer it probes (a one-kind audience of a few thousand members took minutes).
    materialized = "MATERIALIZED " if connection.vendor == "postgresql" else ""
    sql = (
        "WITH members AS ("  # noqa: S608 - names from model metadata
        f"SELECT customer_id FROM {_MEMBERSHIPS} "
        "WHERE client_id = %s AND segment_id = %s AND left_at IS NULL"
        "), suppressed AS ("
        f"SELECT DISTINCT customer_id FROM {_MEMBERSHIPS} "
        f"WHERE client_id = %s AND segment_id IN ({marks}) AND left_at IS NULL{excluded_sql}"
        f"), latest AS ({latest}), withdrawn AS {materialized}({withdrawn}), "
        f"withheld AS {materialized}(SELECT customer_id, {flags} FROM ({sharing}) s "
        "GROUP BY customer_id) "
        f"SELECT c.id, {shown[EMAIL]} AS {KIND_NAMES[EMAIL]}, "
        f"{shown[PHONE]} AS {KIND_NAMES[PHONE]}, CASE "
        f"WHEN c.erased_at IS NOT NULL THEN '{ERASED}' "
        f"WHEN COALESCE(l.action, '') <> 'granted' THEN '{NO_CONSENT}' "
        f"WHEN h.customer_id IS NOT NULL AND ({none_left}) THEN '{NO_CONSENT}' "
        f"WHEN s.customer_id IS NOT NULL THEN '{SUPPRESSED}' "
        f"ELSE '{EXPORTABLE}' END AS fate "
        f"FROM {_CUSTOMERS} c JOIN members m ON m.customer_id = c.id "
        "LEFT JOIN latest l ON l.customer_id = c.id "
        "LEFT JOIN suppressed s ON s.customer_id = c.id "
        "LEFT JOIN withheld h ON h.customer_id = c.id "
        "WHERE c.client_id = %s"
    )
    params = [client_id, audience.segment_id, client_id, *suppression_ids]
    params += excluded[1] if excluded else []
    params += [*latest_params, *withdrawn_params, *[client_id] * len(kinds)]
    return sql, [*params, client_id]


def _count_fates(cursor, candidates: str, kinds: tuple[int, ...]) -> ExportCounts:
    no_value = " AND ".join(f"{KIND_NAMES[kind]} = ''" for kind in kinds)
    cursor.execute(
        "SELECT COUNT(*), "  # noqa: S608 - names built here
        f"SUM(CASE WHEN fate = '{ERASED}' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN fate = '{NO_CONSENT}' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN fate = '{SUPPRESSED}' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN fate = '{HELD_OUT}' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN fate = '{EXPORTABLE}' AND {no_value} THEN 1 ELSE 0 END) "
        f"FROM {candidates}"
    )
    members, erased, no_consent, suppressed, held_out, no_identifier = (
        v or 0 for v in cursor.fetchone()
    )
    return ExportCounts(
        members=members,
        held_back_erased=erased,
        held_back_consent=no_consent,
        suppressed=suppressed,
        held_out=held_out,
        no_identifier=no_identifier,
        exported=members - erased - no_consent - suppressed - held_out - no_identifier,
    )


def _sorted_values_sql(candidates: str, kind: int, hashing: str) -> str:
    """Distinct uploaded values of one kind in code-point order (UTF-8 byte order)."""
    column = KIND_NAMES[kind]
    value = hashed_sql(hashing, column, connection.vendor)
    if connection.vendor == "postgresql":
        value = f'({value}) COLLATE "C"'  # byte order, whatever the database's collation
    return (
        f"SELECT DISTINCT {value} AS value FROM {candidates} "  # noqa: S608 - names built here
        f"WHERE fate = '{EXPORTABLE}' AND {column} <> '' ORDER BY 1"
    )


def _insert_chunks(chunks: list[AudienceSnapshotChunk]) -> None:
    if connection.vendor != "postgresql":
        AudienceSnapshotChunk.objects.bulk_create(chunks)
        return
    # COPY: psycopg escapes 650 KB values in C; an INSERT's client-side quoting took 0.5 s
    # per million values.
    columns = ("client_id", "snapshot_id", "kind", "position", "size", "values")
    table = AudienceSnapshotChunk._meta.db_table
    with connection.cursor() as cursor, pgcopy.copy_in(cursor, table, columns) as copy:
        for chunk in chunks:
            copy.write_row([getattr(chunk, column) for column in columns])


def _write_chunks(snapshot: AudienceSnapshot, kind: int, values_sql: str) -> int:
    """Cut the sorted values into chunk rows; return how many values there were."""
    total, position, pending = 0, 0, []
    with connection.chunked_cursor() as cursor:
        cursor.execute(values_sql)
        while rows := cursor.fetchmany(AudienceSnapshotChunk.CHUNK_VALUES):
            pending.append(
                AudienceSnapshotChunk(
                    client_id=snapshot.client_id,
                    snapshot=snapshot,
                    kind=kind,
                    position=position,
                    size=len(rows),
                    values="\n".join(row[0] for row in rows),
                )
            )
            total, position = total + len(rows), position + 1
            if len(pending) == 20:
                _insert_chunks(pending)
                pending = []
    if pending:
        _insert_chunks(pending)
    return total


def snapshot_build(
    audience: Audience,
    snapshot: AudienceSnapshot,
    *,
    hashing: str,
    progress: Callable[[str], None] | None = None,
) -> ExportCounts:
    """Fill ``snapshot`` with the export set; return who was held back and why.

    Two customers sharing an identifier give one value: the platforms see each value once."""
    kinds = audience_kinds(audience)
    candidates = f"audience_export_{int(snapshot.pk)}"
    with _bulk_transaction(), connection.cursor() as cursor:
        AudienceSnapshotChunk.objects.filter(snapshot=snapshot).delete()
        cursor.execute(f"DROP TABLE IF EXISTS {candidates}")
        sql, params = export_candidates_sql(audience)
        cursor.execute(f"CREATE TEMPORARY TABLE {candidates} AS {sql}", params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {candidates}")  # a planner that knows its size sorts in memory
        if holdout_running(audience):
            candidates_hold_out(cursor, audience, candidates, EXPORTABLE, HELD_OUT)
        if progress:
            progress(gettext_noop("участники отобраны, согласия проверены"))
        counts = _count_fates(cursor, candidates, kinds)
        for kind in kinds:
            counts.per_kind[kind] = _write_chunks(
                snapshot, kind, _sorted_values_sql(candidates, kind, hashing)
            )
            if progress:
                progress(f"захешировано: {KIND_NAMES[kind]}")
        cursor.execute(f"DROP TABLE {candidates}")
        snapshot.size = sum(counts.per_kind.values())
        snapshot.counts = {KIND_NAMES[k]: n for k, n in counts.per_kind.items()}
        snapshot.complete = True
        snapshot.save(update_fields=["size", "counts", "complete"])
    return counts


# --------------------------------------------------------------------------------------------
# Reading snapshots: values in order, and differences between two snapshots


def snapshot_blocks(snapshot_id: int, kind: int) -> Iterator[str]:
    """The snapshot's values of ``kind`` in order, as newline-joined blocks (its chunks)."""
    chunks = (
        AudienceSnapshotChunk.objects.filter(snapshot_id=snapshot_id, kind=kind)
        .order_by("position")
        .values_list("values", flat=True)
    )
    return (text for text in chunks.iterator(chunk_size=4) if text)


def snapshot_values(snapshot_id: int, kind: int) -> Iterator[str]:
    for block in snapshot_blocks(snapshot_id, kind):
        yield from block.split("\n")


class UnsortedSnapshot(Exception):
    """A snapshot's values are out of order: a difference computed from it would be wrong."""


def _checked(values: Iterable[str]) -> Iterator[str]:
    previous = None
    for value in values:
        if previous is not None and value <= previous:
            raise UnsortedSnapshot(f"{value!r} follows {previous!r}")
        previous = value
        yield value


def sorted_difference(new: Iterable[str], old: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Merge two strictly increasing sequences: (+1, value) for values only in ``new`` (added),
    (-1, value) for values only in ``old`` (removed). Raises UnsortedSnapshot on disorder."""
    sentinel = object()
    new_values, old_values = _checked(new), _checked(old)
    a = next(new_values, sentinel)
    b = next(old_values, sentinel)
    while a is not sentinel and b is not sentinel:
        if a == b:
            a = next(new_values, sentinel)
            b = next(old_values, sentinel)
        elif a < b:
            yield 1, a
            a = next(new_values, sentinel)
        else:
            yield -1, b
            b = next(old_values, sentinel)
    while a is not sentinel:
        yield 1, a
        a = next(new_values, sentinel)
    while b is not sentinel:
        yield -1, b
        b = next(old_values, sentinel)


class ExportFile:
    """A temporary file on disk (uploads stream from it), removed when closed."""

    def __init__(self, suffix: str) -> None:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by close()
            "wb", suffix=suffix, delete=False
        )
        self.path = Path(handle.name)
        self._handle: io.BufferedIOBase | None = handle
        self.lines = 0

    def write_lines(self, lines: Iterable[str]) -> None:
        if self._handle is None:  # appending to a finished file (padding lines)
            self._handle = self.path.open("ab")
        for line in lines:
            self._handle.write(line.encode())
            self._handle.write(b"\n")
            self.lines += 1

    def write_blocks(self, blocks: Iterable[str], transform: Callable[[str], str] = str) -> None:
        """Write newline-joined blocks of values, each value through ``transform``."""
        assert self._handle is not None
        for block in blocks:
            self._handle.write(transform(block).encode())
            self._handle.write(b"\n")
            self.lines += block.count("\n") + 1

    def blocks(self, size: int = 1 << 20) -> Iterator[str]:
        """The finished file's lines as newline-joined blocks (for a file of values)."""
        with self.path.open("rb") as handle:
            rest = b""
            while piece := handle.read(size):
                piece = rest + piece
                cut = piece.rfind(b"\n")
                if cut < 0:
                    rest = piece
                    continue
                rest = piece[cut + 1 :]
                if cut:
                    yield piece[:cut].decode()
            if rest:
                yield rest.decode()

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


@dataclass
class KindDifference:
    """What changed in one kind between two snapshots, as two files of values."""

    added: ExportFile
    removed: ExportFile

    def close(self) -> None:
        self.added.close()
        self.removed.close()


@dataclass
class SnapshotDifference:
    kinds: dict[int, KindDifference]

    @property
    def added(self) -> int:
        return sum(d.added.lines for d in self.kinds.values())

    @property
    def removed(self) -> int:
        return sum(d.removed.lines for d in self.kinds.values())

    def __enter__(self) -> SnapshotDifference:
        return self

    def __exit__(self, *exc: object) -> None:
        for difference in self.kinds.values():
            difference.close()


def snapshot_difference(new_id: int, old_id: int, kinds: Iterable[int]) -> SnapshotDifference:
    """Added (in ``new_id`` only) and removed (in ``old_id`` only) values per kind, in files."""
    result = SnapshotDifference({})
    for kind in kinds:
        added, removed = ExportFile(".txt"), ExportFile(".txt")
        result.kinds[kind] = KindDifference(added, removed)
        files = {1: added, -1: removed}
        for sign, value in sorted_difference(
            snapshot_values(new_id, kind), snapshot_values(old_id, kind)
        ):
            files[sign].write_lines((value,))
        added.finish()
        removed.finish()
    return result


def yandex_csv(blocks_by_kind: dict[int, Iterable[str]]) -> ExportFile:
    """Yandex Audiences CRM CSV: a header of the audience's columns, one identifier per row (a
    row needs an email or a phone, not both). Values (hex hashes) need no CSV quoting."""
    kinds = list(blocks_by_kind)
    export = ExportFile(".csv")
    export.write_lines([",".join(KIND_NAMES[kind] for kind in kinds)])
    export.lines = 0  # the header is not a data row
    for index, kind in enumerate(kinds):
        before, after = "," * index, "," * (len(kinds) - index - 1)
        if before or after:
            export.write_blocks(
                blocks_by_kind[kind],
                lambda block, b=before, a=after: b + block.replace("\n", f"{a}\n{b}") + a,
            )
        else:
            export.write_blocks(blocks_by_kind[kind])
    return export.finish()


def plain_lines(blocks: Iterable[str]) -> ExportFile:
    """VK Ads / myTarget users list: one value per line."""
    export = ExportFile(".txt")
    export.write_blocks(blocks)
    return export.finish()
