"""The byte path's quickest view: compact account records, their state found by the uuid hint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.keys import record_key
from processor.state.overlay import BatchOverlay
from processor.worker import envelope
from processor.worker import partition as partition_module
from processor.worker.decision import KEY_MISMATCH, decide_record
from processor.worker.outcome import Outcome
from processor.worker.outputs import event_record
from processor.worker.partition import Verdict
from processor.worker.state import k_account, k_index
from tests.unit.test_fast_path import T1, T2, T3, CountingLoads, decodes  # noqa: F401
from tests.unit.test_partition import ACCOUNTS, SRC, Partition, acct

GUID = "{08ee6c6d-1c2e-4b3a-9d8f-0123456789ab}"


def compact(agg: str, account: dict[str, Any], **extra: Any) -> bytes:
    """An account record as the publisher writes it: compact JSON, ``deleted`` last."""
    record = {"type": "account", "sourceId": SRC, "aggregationId": agg, "account": account}
    return orjson.dumps({**record, "deleted": False, **extra})


def start(agg: str, started: str, mode: str = "FULL") -> dict[str, Any]:
    base = {"sourceId": SRC, "aggregationId": agg}
    return {"type": "aggregation.started", **base, "startedAt": started, "mode": mode}


def completed(agg: str) -> dict[str, Any]:
    return {
        "type": "aggregation.completed",
        "sourceId": SRC,
        "aggregationId": agg,
        "status": "COMPLETED",
    }


def aggregation(
    p: Partition, agg: str, started: str, accounts: list[dict[str, Any]]
) -> list[Outcome]:
    """One FULL aggregation of compact records; the account records' outcomes."""
    values = [compact(agg, a) for a in accounts]
    return p.batch(start(agg, started), *values, completed(agg))[1:-1]


class Envelopes:
    """Counts the account records the msgspec envelope (the byte path's second view) read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, value: bytes) -> Any:
        seen = self.inner(value)
        self.calls += seen is not None
        return seen


@pytest.fixture
def envelopes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Envelopes]:
    spy = Envelopes(partition_module.account_bytes)
    monkeypatch.setattr(partition_module, "account_bytes", spy)
    yield spy


def test_compact_unchanged_records_are_decided_without_any_decoder(
    decodes: CountingLoads,  # noqa: F811
    envelopes: Envelopes,
) -> None:
    """Repeated compact records are unchanged with no JSON decoder at all, and carry the
    record key their account implies."""
    p = Partition()
    aggregation(p, "a1", T1, ACCOUNTS)
    decodes.calls = envelopes.calls = 0
    outcomes = aggregation(p, "a2", T2, ACCOUNTS)
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * len(ACCOUNTS)
    assert (decodes.calls, envelopes.calls) == (0, 0)
    assert [o.record_key for o in outcomes] == [
        record_key(SRC, a["uuid"], a["nativeIdentity"]) for a in ACCOUNTS
    ]
    assert p.writes[-1] == 1  # only the seen chunk


def test_a_wrong_uuid_hint_falls_back_to_the_account_s_identity(envelopes: Envelopes) -> None:
    """An account whose first ``uuid`` member is a nested one naming another stored account:
    that account's state is not taken for it (its bytes differ); the identity path decides
    it unchanged, with its own record key."""
    other = acct(1)
    tricky = {"nativeIdentity": "CN=tricky", "attributes": {"uuid": other["uuid"]}, "uuid": "u-9"}
    assert envelope.compact_account(compact("a2", tricky)).uuid_hint == other["uuid"]  # type: ignore[union-attr]
    p = Partition()
    aggregation(p, "a1", T1, [tricky, other])
    envelopes.calls = 0
    outcomes = aggregation(p, "a2", T2, [tricky, other])
    assert [o.verdict for o in outcomes] == [Verdict.UNCHANGED] * 2
    assert outcomes[0].record_key == record_key(SRC, "u-9", "CN=tricky")
    assert envelopes.calls == 1  # the tricky one went on to the identity path


def test_the_record_key_is_still_checked_on_the_compact_path() -> None:
    """An unchanged compact record keyed as another account is dead-lettered (key check)."""
    p = Partition()
    aggregation(p, "a1", T1, ACCOUNTS[:2])
    overlay = BatchOverlay(p.store)
    p.processor.begin_batch()
    decide_record(
        p.processor,
        orjson.dumps(start("a2", T2)),
        overlay,
        provisioning=False,
        outputs=lambda o: None,
        check_key=False,
    )
    value = compact("a2", ACCOUNTS[0])
    wrong = record_key(SRC, ACCOUNTS[1]["uuid"], ACCOUNTS[1]["nativeIdentity"])
    outcome, _ = decide_record(
        p.processor, value, overlay, provisioning=False, outputs=lambda o: None, key=wrong
    )
    assert (outcome.verdict, outcome.reason) == (Verdict.DEAD_LETTERED, KEY_MISMATCH)
    right = record_key(SRC, ACCOUNTS[0]["uuid"], ACCOUNTS[0]["nativeIdentity"])
    outcome, _ = decide_record(
        p.processor, value, overlay, provisioning=False, outputs=lambda o: None, key=right
    )
    assert outcome.verdict == Verdict.UNCHANGED


def test_a_uuid_r1_spells_otherwise_is_not_taken_from_the_hint(envelopes: Envelopes) -> None:
    """State stored under a uuid as sent (before R1 spelled GUIDs in lower case) is not
    found by the hint: the identity path decides, with the record key R1 spells."""
    upper = "{" + GUID[1:-1].upper() + "}"
    account = {"nativeIdentity": "CN=legacy", "uuid": upper, "attributes": {"title": "x"}}
    p = Partition()
    aggregation(p, "a1", T1, [account])
    [(key, value)] = list(p.store.scan(b"a/"))
    assert key == k_account(SRC, f"u:{GUID}")
    legacy = f"u:{upper}"  # the state as an older worker keyed it
    p.store.apply(
        {key: None, k_account(SRC, legacy): value, k_index(SRC, "CN=legacy"): legacy.encode()},
        None,
    )
    envelopes.calls = 0
    [outcome] = aggregation(p, "a2", T2, [account])
    assert outcome.verdict == Verdict.UNCHANGED
    assert outcome.record_key == f"{SRC}/{GUID}".encode()
    assert envelopes.calls == 1


def test_a_compact_deletion_with_the_stored_bytes_is_a_deletion() -> None:
    """``"deleted":true`` after repeated account bytes is still a DELTA deletion."""
    p = Partition()
    aggregation(p, "a1", T1, ACCOUNTS)
    agg = "a2"
    outcomes = p.batch(
        start(agg, T2, "DELTA"), compact(agg, ACCOUNTS[0], deleted=True), completed(agg)
    )
    assert outcomes[1].verdict == Verdict.STORED
    assert [(e.operation, e.native_identity) for e in outcomes[-1].events] == [
        ("ACCOUNT_DELETED", ACCOUNTS[0]["nativeIdentity"])
    ]


def test_reordered_compact_records_are_learned_then_decided_from_bytes(
    decodes: CountingLoads,  # noqa: F811
) -> None:
    """Other bytes of the same account take the canonical path once, then the compact one."""
    p = Partition()
    aggregation(p, "a1", T1, ACCOUNTS[:3])
    reordered = [dict(reversed(list(a.items()))) for a in ACCOUNTS[:3]]
    decodes.calls = 0
    assert [o.verdict for o in aggregation(p, "a2", T2, reordered)] == [Verdict.UNCHANGED] * 3
    assert decodes.calls == 3
    decodes.calls = 0
    assert [o.verdict for o in aggregation(p, "a3", T3, reordered)] == [Verdict.UNCHANGED] * 3
    assert decodes.calls == 0


def _event_bytes(outcomes: list[Outcome]) -> list[bytes]:
    return [event_record("e", e, 0).value or b"" for o in outcomes for e in o.events]


def test_events_are_the_same_bytes_with_and_without_the_byte_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Changed, created and unchanged compact records give byte-identical events whether or
    not the byte path runs."""
    second = [acct(0, title="Lead"), *ACCOUNTS[1:18], acct(18, groups=("g1", "g2")), acct(99)]

    def run() -> list[bytes]:
        p = Partition()
        aggregation(p, "a1", T1, ACCOUNTS)
        return _event_bytes(
            p.batch(start("a2", T2), *[compact("a2", a) for a in second], completed("a2"))
        )

    with_path = run()
    monkeypatch.setattr(partition_module, "compact_account", lambda value: None)
    monkeypatch.setattr(partition_module, "account_bytes", lambda value: None)
    without = run()
    assert len(with_path) == 4  # two updated, one created, one deleted
    assert with_path == without


def _decide_second(value: bytes, byte_path: bool) -> tuple[Any, ...]:
    """What a record of the second aggregation decides to, after a baseline of three."""
    accounts = [acct(1), {**acct(2), "uuid": GUID}, acct(3)]
    p = Partition()
    aggregation(p, "a1", T1, accounts)
    p.batch(start("a2", T2))
    with (
        mock.patch.object(
            partition_module,
            "compact_account",
            partition_module.compact_account if byte_path else lambda value: None,
        ),
        mock.patch.object(
            partition_module,
            "account_bytes",
            partition_module.account_bytes if byte_path else lambda value: None,
        ),
    ):
        [outcome] = p.batch(value)
    return (outcome.verdict, outcome.reason, outcome.record_key, _event_bytes([outcome]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 2),
    at=st.integers(0, 10_000),
    mutation=st.sampled_from(["same", "space", "byte", "cut", "upper", "extra", "hint"]),
    byte=st.integers(0, 255),
)
def test_the_byte_path_decides_as_the_canonical_path(
    which: int, at: int, mutation: str, byte: int
) -> None:
    """A compact record of a stored account, as it was or altered (spacing, any byte, cut
    short, its uuid's case, an extra member, another account's uuid first), is decided exactly
    as without the byte path: same verdict, reason, record key and event bytes."""
    account = [acct(1), {**acct(2), "uuid": GUID}, acct(3)][which]
    value = compact("a2", account)
    at %= len(value)
    if mutation == "space":
        value = value[:at] + b" " + value[at:]
    elif mutation == "byte":
        value = value[:at] + bytes([byte]) + value[at + 1 :]
    elif mutation == "cut":
        value = value[:at]
    elif mutation == "upper":
        value = value.replace(GUID.encode(), GUID.upper().encode())
    elif mutation == "extra":
        value = value[:-1] + b',"note":1}'
    elif mutation == "hint":
        head, _, rest = value.partition(b'"account":{')
        value = head + b'"account":{"x":{"uuid":"' + GUID.encode() + b'"},' + rest
    assert _decide_second(value, byte_path=True) == _decide_second(value, byte_path=False)
