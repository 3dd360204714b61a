"""The worker's fast path: an account record identical to its stored input skips validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from processor.keys import record_key
from processor.worker import partition as partition_module
from processor.worker.partition import Verdict
from processor.worker.state import NO_INPUT_DIGEST, StoredAccount
from tests.helpers import event_model
from tests.unit.test_partition import ACCOUNTS, SRC, Partition, acct

T1, T2, T3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
#: The platform sets the first account's title (after the first aggregation).
LEAD_BY_PROVISIONING = {
    "sourceId": SRC,
    "completedAt": T1.replace("00:00:00", "06:00:00"),
    "input": {
        "key": {"simple": {"id": ACCOUNTS[0]["nativeIdentity"]}},
        "changes": [{"op": "Set", "attribute": "title", "value": "Lead"}],
    },
}


class CountingAdapter:
    """Wraps the record validator to count full-path decisions."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.accounts = 0

    def validate_python(self, obj: Any) -> Any:
        if isinstance(obj, dict) and obj.get("type") == "account":
            self.accounts += 1
        return self.inner.validate_python(obj)


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingAdapter]:
    counter = CountingAdapter(partition_module._RECORD)
    monkeypatch.setattr(partition_module, "_RECORD", counter)
    yield counter


def _records(agg: str, accounts: list[Any]) -> list[dict[str, Any]]:
    base = {"sourceId": SRC, "aggregationId": agg}
    return [{"type": "account", **base, "account": a} for a in accounts]


def _start(p: Partition, agg: str, started: str) -> None:
    p.batch(
        {
            "type": "aggregation.started",
            "sourceId": SRC,
            "aggregationId": agg,
            "startedAt": started,
            "mode": "FULL",
        }
    )


def test_identical_records_are_unchanged_without_validation(validations: CountingAdapter) -> None:
    """A second aggregation of the same accounts decides every account on the fast path."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS)
    validations.accounts = 0
    _start(p, "a2", T2)
    outcomes = p.batch(*_records("a2", ACCOUNTS))
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * len(ACCOUNTS)
    assert validations.accounts == 0
    assert p.writes[-1] == 1  # only the seen chunk


def test_key_order_and_spacing_do_not_defeat_the_fast_path(validations: CountingAdapter) -> None:
    """The input digest is over the canonical form: reordered keys still match."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS[:3])
    validations.accounts = 0
    _start(p, "a2", T2)
    reordered = [dict(reversed(list(a.items()))) for a in ACCOUNTS[:3]]
    values = [json.dumps(r, indent=2).encode() for r in _records("a2", reordered)]
    outcomes = p.batch(*values)
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * 3
    assert validations.accounts == 0


def test_seen_accounts_on_the_fast_path_are_not_deleted() -> None:
    """Accounts decided on the fast path count as seen by a FULL aggregation."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS)
    outcomes = p.aggregation("a2", T2, ACCOUNTS[:-1])
    assert [e.operation for o in outcomes for e in o.events] == ["ACCOUNT_DELETED"]
    assert outcomes[-1].events[0].native_identity == ACCOUNTS[-1]["nativeIdentity"]


def test_state_written_by_provisioning_never_matches_an_input(
    validations: CountingAdapter,
) -> None:
    """After the platform changed the stored account, the old input goes the full path."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS[:2])
    [applied] = p.batch(LEAD_BY_PROVISIONING, provisioning=True)
    assert applied.verdict == Verdict.APPLIED
    validations.accounts = 0
    # The source still shows the old title after the platform's change: a native revert.
    outcomes = p.aggregation("a2", T2, ACCOUNTS[:2])
    assert validations.accounts >= 1
    [event] = [event_model(e) for o in outcomes for e in o.events]
    assert [(c.name, c.oldValue, c.newValue) for c in event.singleValueAttributeChanges] == [
        ("title", "Lead", "Engineer")
    ]


def test_a_new_form_of_the_same_account_is_learned_once(validations: CountingAdapter) -> None:
    """Same content in a new form: unchanged, its digest is stored, then it is fast."""
    p = Partition()
    p.aggregation("a1", T1, [acct(1)])
    padded = {**acct(1), "extraField": None}  # ignored by the model: same account
    p.aggregation("a2", T2, [padded])
    validations.accounts = 0
    outcomes = p.aggregation("a3", T3, [padded])
    assert outcomes[1].verdict == Verdict.UNCHANGED
    assert validations.accounts == 0


def test_records_of_an_older_aggregation_stay_stale() -> None:
    """The fast path never hides a stale record: state newer than the aggregation wins."""
    p = Partition()
    p.aggregation("a1", T2, ACCOUNTS[:1])
    _start(p, "old", T1)
    [outcome] = p.batch(*_records("old", ACCOUNTS[:1]))
    assert outcome.verdict == Verdict.STALE


def test_version_1_stored_accounts_are_read_without_an_input_digest() -> None:
    """State written before the input digest existed decodes, and matches no input."""
    v2 = StoredAccount(5, b"d" * 16, b"{}", b"i" * 16).encode()
    v1 = bytes([1]) + v2[1:9] + b"d" * 16 + b"{}"
    decoded = StoredAccount.decode(v1)
    assert (decoded.as_of_ms, decoded.digest, decoded.account_json) == (5, b"d" * 16, b"{}")
    assert decoded.input_digest == NO_INPUT_DIGEST
    assert not StoredAccount.matches_input(v1, 10, NO_INPUT_DIGEST)
    assert StoredAccount.matches_input(v2, 10, b"i" * 16)
    assert not StoredAccount.matches_input(v2, 4, b"i" * 16)


class CountingLoads:
    """Wraps ``codec.loads`` to count the account records the worker decoded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, data: Any) -> Any:
        obj = self.inner(data)
        if isinstance(obj, dict) and obj.get("type") == "account":
            self.calls += 1
        return obj


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingLoads]:
    spy = CountingLoads(partition_module.codec.loads)
    monkeypatch.setattr(partition_module.codec, "loads", spy)
    yield spy


def test_repeated_bytes_are_unchanged_without_decoding(decodes: CountingLoads) -> None:
    """Records whose account bytes repeat are decided unchanged without any JSON decode."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS)
    _start(p, "a2", T2)
    decodes.calls = 0
    outcomes = p.batch(*_records("a2", ACCOUNTS))
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * len(ACCOUNTS)
    assert decodes.calls == 0
    keys = [record_key(SRC, a["uuid"], a["nativeIdentity"]) for a in ACCOUNTS]
    assert [o.record_key for o in outcomes] == keys
    assert p.writes[-1] == 1  # only the seen chunk


def test_reordered_bytes_take_the_canonical_path_and_are_learned(
    decodes: CountingLoads, validations: CountingAdapter
) -> None:
    """Other bytes of the same account are decoded, still unchanged, and fast the next time."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS[:3])
    reordered = [dict(reversed(list(a.items()))) for a in ACCOUNTS[:3]]
    _start(p, "a2", T2)
    decodes.calls = validations.accounts = 0
    outcomes = p.batch(*_records("a2", reordered))
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * 3
    assert (decodes.calls, validations.accounts) == (3, 0)
    assert p.writes[-1] == 3 + 1  # the new bytes digests, and the seen chunk
    _start(p, "a3", T3)
    decodes.calls = 0
    outcomes = p.batch(*_records("a3", reordered))
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * 3
    assert decodes.calls == 0


def test_changed_bytes_are_decided(decodes: CountingLoads) -> None:
    """An account whose bytes changed goes the full path and its change is reported."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS[:2])
    _start(p, "a2", T2)
    decodes.calls = 0
    outcomes = p.batch(*_records("a2", [acct(0, title="Lead"), ACCOUNTS[1]]))
    assert [o.verdict for o in outcomes] == [Verdict.EMITTED, Verdict.UNCHANGED]
    assert decodes.calls == 1
    [event] = map(event_model, outcomes[0].events)
    assert [(c.name, c.newValue) for c in event.singleValueAttributeChanges] == [("title", "Lead")]


def test_repeated_bytes_of_a_deletion_are_not_taken_for_unchanged() -> None:
    """A DELTA record flagged deleted: true with the stored bytes is still a deletion."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS)
    outcomes = p.aggregation("a2", T2, [], mode="DELTA", deleted=[ACCOUNTS[0]])
    assert [(e.operation, e.native_identity) for o in outcomes for e in o.events] == [
        ("ACCOUNT_DELETED", ACCOUNTS[0]["nativeIdentity"])
    ]


def test_state_of_version_2_takes_the_canonical_path_then_the_byte_path(
    decodes: CountingLoads,
) -> None:
    """Accounts stored before the bytes digest existed are decided as before, then learned."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS[:2])
    for key, value in list(p.store.scan(b"a/")):
        old = StoredAccount.decode(value)
        v2 = bytes([2]) + old.encode()[1:41] + old.account_json  # header without the bytes digest
        p.store.apply({key: v2}, None)
        assert StoredAccount.decode(v2) == replace(old, bytes_digest=NO_INPUT_DIGEST)
    _start(p, "a2", T2)
    decodes.calls = 0
    outcomes = p.batch(*_records("a2", ACCOUNTS[:2]))
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * 2
    assert decodes.calls == 2
    _start(p, "a3", T3)
    decodes.calls = 0
    assert [o.verdict for o in p.batch(*_records("a3", ACCOUNTS[:2]))] == [Verdict.UNCHANGED] * 2
    assert decodes.calls == 0


def test_state_written_by_provisioning_never_matches_bytes(decodes: CountingLoads) -> None:
    """Provisioning clears the bytes digest: the old bytes are decided on the full path."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS[:1])
    p.batch(LEAD_BY_PROVISIONING, provisioning=True)
    [(_, value)] = list(p.store.scan(b"a/"))
    assert StoredAccount.decode(value).bytes_digest == NO_INPUT_DIGEST
    _start(p, "a2", T2)
    decodes.calls = 0
    [outcome] = p.batch(*_records("a2", ACCOUNTS[:1]))
    assert decodes.calls == 1
    assert outcome.verdict == Verdict.EMITTED


def test_records_the_byte_path_cannot_read_are_decided_as_before(decodes: CountingLoads) -> None:
    """Repeated account bytes in a record with extra or malformed envelope fields are not
    taken by the byte path: an extra field goes the canonical path, bad text is dead-lettered
    with the decoder's reason."""
    p = Partition()
    p.aggregation("a1", T1, ACCOUNTS[:1])
    _start(p, "a2", T2)
    [record] = _records("a2", ACCOUNTS[:1])
    account = json.dumps(record["account"]).encode()
    head = b'{"type":"account","sourceId":"%s","aggregationId":"a2","account":' % SRC.encode()
    decodes.calls = 0
    extra, infinite, not_utf8 = p.batch(
        head + account + b',"note":"x"}',
        head + account + b',"note":1e999}',
        head + account + b',"note":"\xff"}',
    )
    assert extra.verdict == Verdict.UNCHANGED
    assert decodes.calls == 1  # the canonical path decided it
    assert infinite.verdict == not_utf8.verdict == Verdict.DEAD_LETTERED
    assert (infinite.reason or "").startswith("invalid JSON")
    assert (not_utf8.reason or "").startswith("invalid JSON")
