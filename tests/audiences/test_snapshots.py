"""Snapshots as sorted chunks: the build (fates, hashing, de-duplication, chunk boundaries), the
streaming merge behind every difference, and the files cut from them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiences.hashing import EMAIL, PHONE
from audiences.models import AudienceSnapshot, AudienceSnapshotChunk
from audiences.snapshots import (
    ExportFile,
    UnsortedSnapshot,
    plain_lines,
    snapshot_blocks,
    snapshot_build,
    snapshot_difference,
    snapshot_values,
    sorted_difference,
    yandex_csv,
)
from clients.ingest import ingest_records
from clients.models import Customer
from consent.requests import customer_erase
from segments.segmentation import segment_refresh

from .conftest import build_world, grant, make_audience, md5, sha256, vk_destination

VALUES = st.sets(st.text(alphabet="abcdefабв@.0123456789", min_size=1, max_size=6), max_size=40)


@given(new=VALUES, old=VALUES)
def test_sorted_difference_is_the_two_set_differences_in_order(new, old):
    merged = list(sorted_difference(sorted(new), sorted(old)))
    assert [v for sign, v in merged if sign == 1] == sorted(new - old)
    assert [v for sign, v in merged if sign == -1] == sorted(old - new)


def test_sorted_difference_refuses_values_out_of_order():
    """A snapshot stored in another order than Python's would give a wrong difference (people
    who withdrew staying on the platform): the merge stops instead."""
    with pytest.raises(UnsortedSnapshot):
        list(sorted_difference(["a", "c", "b"], ["a", "b", "c"]))
    with pytest.raises(UnsortedSnapshot):  # a repeated value is disorder too
        list(sorted_difference(["a"], ["b", "b"]))


def test_files_from_blocks(tmp_path):
    with yandex_csv({EMAIL: iter(["e1\ne2", "e3"]), PHONE: iter(["p1"])}) as export:
        assert export.path.read_text() == "email,phone\ne1,\ne2,\ne3,\n,p1\n"
        assert export.lines == 4
    with yandex_csv({PHONE: iter(["p1\np2"])}) as export:
        assert export.path.read_text() == "phone\np1\np2\n"
        assert export.lines == 2
    with plain_lines(iter(["a\nb", "c"])) as export:
        assert export.path.read_text() == "a\nb\nc\n"
        assert export.lines == 3
        # Read back in blocks of whole lines, whatever the read size.
        for size in range(1, 8):
            assert "\n".join(export.blocks(size=size)) == "a\nb\nc", size
        assert list(export.blocks()) == ["a\nb\nc"]
    empty = ExportFile(".txt").finish()
    assert list(empty.blocks()) == []
    empty.close()


@pytest.mark.django_db
def test_build_in_sorted_chunks_with_shared_identifiers_once(client_a, vk_stub, monkeypatch):
    """Small chunks, so the values cross chunk boundaries; two customers sharing a phone
    upload it once; counts put every member in exactly one bucket."""
    monkeypatch.setattr(AudienceSnapshotChunk, "CHUNK_VALUES", 7)
    world = build_world(client_a, 40, no_consent=3, suppressed=2)
    ingest_records(
        client=client_a,
        kind="customers",
        records=[
            {"external_id": "twin", "email": "twin@example.ru", "phone": "+79160000020",
             "city": "Москва", "first_name": "Анна"},
            {"external_id": "nophone", "email": "", "phone": "", "city": "Москва",
             "first_name": "Анна"},
        ],
    )  # fmt: skip
    twin, nothing = (
        Customer.objects.for_client(client_a).get(external_id=x) for x in ("twin", "nophone")
    )
    grant(client_a, [twin, nothing])
    customer_erase(customer=world.customers["c000039"])
    segment_refresh(segment=world.segment)
    audience = make_audience(
        world, vk_destination(client_a, hashing="md5"), identifiers="email_phone"
    )
    snapshot = AudienceSnapshot.objects.create(client_id=client_a.pk, audience=audience)

    counts = snapshot_build(audience, snapshot, hashing="md5")

    # c000039 was erased before the refresh: no longer a member at all.
    assert (counts.members, counts.held_back_erased, counts.held_back_consent) == (41, 0, 3)
    assert (counts.suppressed, counts.no_identifier, counts.exported) == (2, 1, 35)
    expected_emails = world.emails(md5, exclude={"c000039"}) | {md5("twin@example.ru")}
    expected_phones = world.phones(md5, exclude={"c000039"})  # the twin's phone is c000020's
    assert md5("79160000020") in expected_phones
    assert list(snapshot_values(snapshot.pk, EMAIL)) == sorted(expected_emails)
    assert list(snapshot_values(snapshot.pk, PHONE)) == sorted(expected_phones)
    assert snapshot.counts == {"email": 35, "phone": 34}
    chunks = AudienceSnapshotChunk.objects.filter(snapshot=snapshot, kind=EMAIL)
    assert [c.size for c in chunks.order_by("position")] == [7, 7, 7, 7, 7]
    assert len(list(snapshot_blocks(snapshot.pk, PHONE))) == 5  # 7+7+7+7+6

    # A rebuild of the same snapshot (a resumed run) replaces its chunks, never doubles them.
    snapshot_build(audience, snapshot, hashing="md5")
    assert AudienceSnapshotChunk.objects.filter(snapshot=snapshot).count() == 10

    # The difference to a later snapshot, across chunk boundaries.
    customer_erase(customer=world.customers["c000010"])
    later = AudienceSnapshot.objects.create(client_id=client_a.pk, audience=audience)
    assert snapshot_build(audience, later, hashing="md5").held_back_erased == 1
    with snapshot_difference(later.pk, snapshot.pk, (EMAIL, PHONE)) as difference:
        assert (difference.added, difference.removed) == (0, 2)
        removed = difference.kinds[EMAIL].removed.path.read_text()
        assert removed == md5("user10@example.ru") + "\n"
    with snapshot_difference(snapshot.pk, later.pk, (EMAIL,)) as difference:
        assert (difference.added, difference.removed) == (1, 0)


@pytest.mark.django_db
def test_snapshot_values_hash_as_the_platform_expects(client_a, vk_stub):
    world = build_world(client_a, 12, no_consent=1, suppressed=1)
    audience = make_audience(world, vk_destination(client_a, hashing="plain"))
    snapshot = AudienceSnapshot.objects.create(client_id=client_a.pk, audience=audience)
    snapshot_build(audience, snapshot, hashing="sha256")
    assert list(snapshot_values(snapshot.pk, EMAIL)) == sorted(world.emails(sha256))
    plain = AudienceSnapshot.objects.create(client_id=client_a.pk, audience=audience)
    snapshot_build(audience, plain, hashing="plain")
    assert list(snapshot_values(plain.pk, EMAIL)) == sorted(c.email for c in world.expected())
