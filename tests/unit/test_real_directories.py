"""What real directories send, at the edges: the codec, the worker's keys, timestamps and logs.

The value rules themselves (big integers, dates, NFC, JSON types, GUIDs, uniqueId) are
checked on both paths in ``test_parity``, the ``diff`` command's side in ``test_cli_diff``;
here are the parts only the codec or the worker has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from processor import codec
from processor.core import EntitlementCatalog, uuid_key
from processor.keys import record_key
from processor.models import Account, CatalogEntry
from processor.state.overlay import BatchOverlay
from processor.worker.partition import Verdict
from processor.worker.state import StoredAccount, digest, k_account, k_index
from tests.unit.conftest import SOURCE_ID, make_source
from tests.unit.memory_worker import MemoryWorker
from tests.unit.test_parity import WorkerPath

# ----------------------------------------------------------------------------- codec


def test_codec_keeps_integers_beyond_64_bits_both_ways() -> None:
    """Integers outside 64 bits decode as exact ints and encode digit for digit."""
    text = b'{"a":18446744073709551617,"b":[-9223372036854775809,1.5],"c":"12345678901234567890"}'
    obj = codec.loads(text)
    assert obj == {
        "a": 2**64 + 1,
        "b": [-(2**63) - 1, 1.5],
        "c": "12345678901234567890",
    }
    assert codec.dumps(obj) == text
    assert codec.dumps_canonical({"b": 2**64, "a": 1}) == b'{"a":1,"b":18446744073709551616}'


def test_codec_still_refuses_what_orjson_refuses_on_the_exact_path() -> None:
    """Text with a long digit run is still checked by orjson first (NaN is refused)."""
    with pytest.raises(Exception, match="invalid JSON"):
        codec.loads(b'{"a": 18446744073709551617, "b": NaN}')


# ----------------------------------------------------------------------------- worker


def _ann(uuid: str, title: str) -> dict[str, Any]:
    return {"nativeIdentity": "CN=Ann", "uuid": uuid, "attributes": {"title": title}}


def test_naive_completed_at_is_dead_lettered_by_the_worker_with_the_same_reason() -> None:
    """The worker's reason for a naive completedAt is the one diff prints after FILE:LINE."""
    worker = WorkerPath(make_source(), [])
    record = {
        "sourceId": SOURCE_ID,
        "input": {"key": {"simple": {"id": "CN=Ann"}}, "changes": []},
        "completedAt": "2026-11-22T08:00:00",
    }
    (outcome,) = worker.feed([(codec.dumps(record), True)])
    assert outcome.verdict is Verdict.DEAD_LETTERED
    assert outcome.reason is not None
    assert outcome.reason.startswith("not a valid provisioning record: completedAt: ")


def test_seven_digit_timestamps_are_accepted_everywhere() -> None:
    """startedAt and completedAt with 7 fractional digits are valid instants."""
    worker = WorkerPath(make_source(), [])
    outcomes = worker.aggregation("agg-1", "2026-01-01T00:00:00.1234567Z", [_ann("u", "a")])
    assert [o.verdict for o in outcomes] == [Verdict.MARKER, Verdict.STORED, Verdict.MARKER]


def test_worker_state_written_under_an_old_guid_spelling_is_re_keyed_not_recreated() -> None:
    """An account stored under its raw braced upper-case uuid (before R1's GUID rule) is
    found again by the same GUID in another spelling: an update, no create or delete."""
    worker = WorkerPath(make_source(), [])
    worker.aggregation("agg-1", "2026-01-01T00:00:00Z", [])
    old_key = "u:{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}"
    stored = _ann("{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}", "a")
    value = StoredAccount(
        0, digest(Account.model_validate(stored).model_dump(mode="json")), codec.dumps(stored)
    )
    overlay = BatchOverlay(worker.store)
    overlay.put(k_account(SOURCE_ID, old_key), value.encode())
    overlay.put(k_index(SOURCE_ID, "CN=Ann"), old_key.encode())
    worker.store.apply(overlay.writes, None)
    outcomes = worker.aggregation(
        "agg-2", "2026-01-02T00:00:00Z", [_ann("08ee6c6d-7d02-4978-9417-d92ba6a5ed50", "b")]
    )
    events = [e for o in outcomes for e in o.events]
    assert [e.operation.value for e in events] == ["ACCOUNT_UPDATED"]
    new_key = "u:{08ee6c6d-7d02-4978-9417-d92ba6a5ed50}"
    assert worker.store.get(k_account(SOURCE_ID, new_key)) is not None
    assert worker.store.get(k_account(SOURCE_ID, old_key)) is None


def test_record_keys_spell_guids_as_r1_matches_them() -> None:
    """A GUID's spellings give one record key (one partition); other uuids stay exact."""
    spellings = ["{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}", "08ee6c6d-7d02-4978-9417-d92ba6a5ed50"]
    assert {record_key("s", u, "CN=Ann") for u in spellings} == {
        b"s/{08ee6c6d-7d02-4978-9417-d92ba6a5ed50}"
    }
    assert record_key("s", "AbC=", "CN=Ann") != record_key("s", "abc=", "CN=Ann")
    assert uuid_key("{08ee6c6d-7d02-4978-9417-d92ba6a5ed50") == (
        "{08ee6c6d-7d02-4978-9417-d92ba6a5ed50"
    )


def test_worker_warning_and_summary_name_the_delete_guard_counts(tmp_path: Path) -> None:
    """The worker logs the held-back deletions with the previous count and the threshold,
    and its summary counts them, as diff's warning does."""
    worker = MemoryWorker(tmp_path)
    source = make_source(delete_threshold=10)
    accounts = [
        Account.model_validate({"nativeIdentity": f"CN=U{i}", "attributes": {"title": "t"}})
        for i in range(4)
    ]
    worker.publish(source, accounts, started_at="2026-01-01T00:00:00Z")
    worker.publish(source, accounts[:2], started_at="2026-01-02T00:00:00Z")
    runner = worker.runner()
    with capture_logs() as logs:
        worker.run(runner)
    (tripped,) = [e for e in logs if e["event"] == "delete_guard_tripped"]
    assert (tripped["source_id"], tripped["suppressed"]) == (SOURCE_ID, 2)
    assert (tripped["previous_accounts"], tripped["threshold_percent"]) == (4, 10)
    summary = runner.summary()
    assert (summary["delete_guard_trips"], summary["deletes_suppressed"]) == (1, 2)


def test_catalog_topic_records_in_nfc_and_nfd_resolve_alike_in_any_order() -> None:
    """Two topic records for one value in NFC and NFD give the same ref whichever came last,
    and removing one leaves the other."""
    nfc_entry = CatalogEntry(attribute="memberOf", value="CN=Zo\u00eb", id="nfc")
    nfd_entry = CatalogEntry(attribute="memberOf", value="CN=Zoe\u0308", id="nfd")
    refs = set()
    for entries in ([nfc_entry, nfd_entry], [nfd_entry, nfc_entry]):
        catalog = EntitlementCatalog(entries)
        refs.add(catalog.ref("memberOf", "CN=Zoe\u0308", case_insensitive=False)["id"])
    assert len(refs) == 1
    catalog = EntitlementCatalog([nfc_entry, nfd_entry])
    catalog.remove("memberOf", min(nfc_entry.value, nfd_entry.value))
    remaining = max(nfc_entry, nfd_entry, key=lambda e: e.value)
    assert catalog.ref("memberOf", "CN=Zo\u00eb", case_insensitive=True)["id"] == remaining.id
    catalog.remove("memberOf", remaining.value)
    assert catalog.ref("memberOf", "CN=Zo\u00eb", case_insensitive=True)["id"] is None
