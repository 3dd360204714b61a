"""Sources are isolated: source ids are validated, and a record's key must match its value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from processor.keys import record_key
from processor.models import MAX_SOURCE_ID_CHARS, SourceDescriptor
from processor.worker.decision import KEY_MISMATCH
from tests.unit.conftest import SOURCE_ID, make_source
from tests.unit.test_record_boundary import T1, T2, T3, Upstream, account

VALID_IDS = ["2c91808a78efc63e0178fb8624b248c5", "hr", "hr.payroll", "a:b_c-D9", "x" * 128]
INVALID_IDS = ["hr/payroll", "", "x" * (MAX_SOURCE_ID_CHARS + 1), "a b", "é", "a\x00", "hr/"]


@pytest.mark.parametrize("source_id", VALID_IDS)
def test_source_ids_of_letters_digits_and_punctuation_are_accepted(source_id: str) -> None:
    """Letters, digits, '.', '_', ':' and '-' up to the maximum length make a source id."""
    assert make_source(id=source_id).id == source_id


@pytest.mark.parametrize("source_id", INVALID_IDS)
def test_source_ids_with_a_slash_or_other_characters_are_refused(source_id: str) -> None:
    """A slash, a space, non-ASCII, a control character, empty or too long: refused."""
    with pytest.raises(ValidationError):
        make_source(id=source_id)


def test_a_source_cannot_delete_the_accounts_of_a_source_named_under_it(tmp_path: Path) -> None:
    """With sources hr and hr/payroll, completing hr touches no payroll account."""
    up = Upstream(tmp_path, make_source(id="hr"))
    payroll = json.loads(make_source(id="hr").model_dump_json()) | {"id": "hr/payroll"}
    sources = up.worker.settings.topic_sources
    up.send(json.dumps(payroll).encode(), topic=sources, key=b"hr/payroll")
    for source_id in ("hr", "hr/payroll"):
        base = {"sourceId": source_id, "aggregationId": "a1"}
        up.send({**base, "type": "aggregation.started", "startedAt": T1})
        up.send(account("CN=p", "t1", source_id=source_id, agg="a1"))
        up.send({**base, "type": "aggregation.completed", "status": "COMPLETED"})
    up.aggregation("a2", T2, [account("CN=p", "t1", source_id="hr", agg="a2")])
    up.run()
    assert up.changes() == []
    assert len(up.dead()) == 3  # hr/payroll's records
    assert all("sourceId" in reason for reason in up.dead()), up.dead()


@pytest.mark.parametrize(
    "key",
    [b"other-source/CN=b", f"{SOURCE_ID}/CN=a".encode(), None, b"", SOURCE_ID.encode()],
    ids=["another source", "another account", "no key", "empty", "source only"],
)
def test_an_account_record_keyed_unlike_its_value_is_dead_lettered(
    tmp_path: Path, key: bytes | None
) -> None:
    """A mis-keyed account record is dead-lettered, and its FULL aggregation deletes nothing."""
    up = Upstream(tmp_path, make_source(delete_threshold=100))
    up.aggregation("a1", T1, [account(n, "t1", agg="a1") for n in ("CN=a", "CN=b")])
    up.run()
    base = {"sourceId": SOURCE_ID, "aggregationId": "a2"}
    up.send({**base, "type": "aggregation.started", "startedAt": T2})
    up.send(account("CN=a", "t2", agg="a2"))
    up.send(account("CN=b", "t2", agg="a2"), key=key)
    up.send({**base, "type": "aggregation.completed", "status": "COMPLETED"})
    up.run()
    assert up.dead() == [KEY_MISMATCH]
    assert up.changes() == [("ACCOUNT_UPDATED", "CN=a", "t2")]


def test_a_marker_keyed_for_another_source_is_dead_lettered(tmp_path: Path) -> None:
    """An aggregation.started keyed under another source starts nothing."""
    up = Upstream(tmp_path)
    started = {"sourceId": SOURCE_ID, "aggregationId": "a1", "type": "aggregation.started"}
    up.send({**started, "startedAt": T1}, key=b"other/a1")
    up.send(account("CN=a", "t1", agg="a1"))
    up.run()
    assert up.dead() == [
        KEY_MISMATCH,
        "no aggregation.started for this aggregation in this partition",
    ]


def test_a_provisioning_record_is_checked_up_to_its_source(tmp_path: Path) -> None:
    """Keyed by a uuid it is accepted; keyed under another source it is dead-lettered."""
    up = Upstream(tmp_path)
    up.aggregation("a1", T1, [account("CN=a", "t1", agg="a1")])
    topic = up.worker.settings.topic_provisioning
    change = {"op": "Set", "attribute": "title", "value": "t9"}
    record = {
        "sourceId": SOURCE_ID,
        "input": {"key": {"simple": {"id": "CN=a"}}, "changes": [change]},
        "completedAt": "2026-11-20T05:00:00Z",
    }
    up.send(record, topic=topic, key=f"{SOURCE_ID}/2c9180835d2e5168015d32f890ca1581".encode())
    up.send(record | {"completedAt": "2026-11-20T06:00:00Z"}, topic=topic, key=b"other/CN=a")
    up.run()
    assert up.dead() == [KEY_MISMATCH]


def test_a_descriptor_is_refused_when_its_id_breaks_the_rules() -> None:
    """The model refuses hr/payroll with a reason naming the id field, not the value."""
    with pytest.raises(ValidationError) as caught:
        SourceDescriptor.model_validate({"id": "hr/payroll", "name": "x"})
    assert caught.value.errors()[0]["loc"] == ("id",)


def test_a_guid_uuid_is_keyed_as_r1_matches_it(tmp_path: Path) -> None:
    """A record keyed by its GUID as R1 writes it ({lower-case hex}) is accepted, in the fast
    path too; keyed by the GUID as the source spelled it, it is dead-lettered."""
    up = Upstream(tmp_path)
    guid = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    normalised = record_key(SOURCE_ID, guid, "CN=g")
    assert normalised == f"{SOURCE_ID}/{{{guid.lower()}}}".encode()

    def record(agg: str, title: str) -> dict[str, object]:
        value = account("CN=g", title, agg=agg)
        value["account"]["uuid"] = guid  # type: ignore[index]
        return value

    for agg, started, title in (("a1", T1, "t1"), ("a2", T2, "t2"), ("a3", T3, "t2")):
        base = {"sourceId": SOURCE_ID, "aggregationId": agg}
        up.send({**base, "type": "aggregation.started", "startedAt": started})
        up.send(record(agg, title), key=normalised)
        up.send({**base, "type": "aggregation.completed", "status": "COMPLETED"})
    up.send(record("a3", "t3"), key=f"{SOURCE_ID}/{guid}".encode())
    up.run()
    assert up.changes() == [("ACCOUNT_UPDATED", "CN=g", "t2")]
    assert up.dead() == [KEY_MISMATCH]
