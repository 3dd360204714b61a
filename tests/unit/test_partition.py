"""The per-partition aggregation lifecycle of the worker, without a broker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processor.models import SourceDescriptor
from processor.state import BatchOverlay, InMemoryStateStore
from processor.worker import partition
from processor.worker.partition import Outcome, PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry
from tests.helpers import event_model, small_source

SRC = "src-1"


def _source(**extra: Any) -> SourceDescriptor:
    return small_source(SRC, **extra)


class Partition:
    """One partition: a processor, a store, and batches committed after each call."""

    def __init__(self, source: SourceDescriptor | None = None) -> None:
        self.registry = SourceRegistry()
        self.registry.put_source(source or _source())
        self.store = InMemoryStateStore()
        self.processor = PartitionProcessor(self.registry)
        self.offset = 0
        self.writes: list[int] = []

    def batch(self, *records: dict[str, Any] | bytes, provisioning: bool = False) -> list[Outcome]:
        overlay = BatchOverlay(self.store)
        self.processor.begin_batch()
        outcomes = []
        first = self.offset
        for record in records:
            value = record if isinstance(record, bytes) else json.dumps(record).encode()
            decide = self.processor.process_provisioning if provisioning else self.processor.process
            outcomes.append(decide(value, overlay))
            self.offset += 1
        self.processor.end_batch(overlay, first)
        self.writes.append(len(overlay.writes))
        self.store.apply(overlay.writes, None)
        return outcomes

    def aggregation(
        self,
        agg: str,
        started: str,
        accounts: list[dict[str, Any]],
        *,
        status: str = "COMPLETED",
        mode: str = "FULL",
        deleted: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> list[Outcome]:
        base = {"sourceId": SRC, "aggregationId": agg}
        records: list[dict[str, Any]] = [
            {"type": "aggregation.started", **base, "startedAt": started, "mode": mode}
        ]
        records += [{"type": "account", **base, "account": a} for a in accounts]
        records += [{"type": "account", **base, "account": a, "deleted": True} for a in deleted]
        records.append({"type": "aggregation.completed", **base, "status": status})
        return self.batch(*records)


def acct(
    n: int, title: str = "Engineer", groups: tuple[str, ...] = ("g1",), **kw: Any
) -> dict[str, Any]:
    return {
        "nativeIdentity": f"CN=user{n},DC=example",
        "uuid": f"u-{n}",
        "attributes": {"title": title, "memberOf": list(groups)},
        **kw,
    }


def events(outcomes: list[Outcome]) -> list[tuple[str, str]]:
    return [(e.operation, e.native_identity) for o in outcomes for e in o.events]


ACCOUNTS = [acct(i) for i in range(20)]


def test_first_completed_aggregation_is_a_silent_baseline() -> None:
    """The first completed aggregation stores accounts and emits nothing."""
    p = Partition()
    outcomes = p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    assert events(outcomes) == []
    assert {o.verdict for o in outcomes[1:-1]} == {Verdict.STORED}


def test_changes_emit_updated_and_created_as_records_arrive() -> None:
    """After the baseline, a changed account gives UPDATED and a new one CREATED."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    changed = [*ACCOUNTS[:19], acct(19, title="Boss"), acct(99)]
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", changed)
    assert events(outcomes) == [
        ("ACCOUNT_UPDATED", "CN=user19,DC=example"),
        ("ACCOUNT_CREATED", "CN=user99,DC=example"),
    ]
    assert outcomes[1].verdict == Verdict.UNCHANGED


def test_an_account_changed_twice_in_a_batch_is_compared_with_its_first_change() -> None:
    """Each record of one account in a batch reads the state the one before it wrote."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    twice = [acct(3, title="Lead"), acct(3, title="Boss"), acct(3, title="Boss")]
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", [*ACCOUNTS, *twice])
    changes = [
        (c.oldValue, c.newValue)
        for o in outcomes
        for e in o.events
        for c in event_model(e).singleValueAttributeChanges
    ]
    assert changes == [("Engineer", "Lead"), ("Lead", "Boss")]
    assert outcomes[-2].verdict == Verdict.UNCHANGED


def test_unchanged_accounts_cost_no_state_write() -> None:
    """An aggregation of unchanged accounts writes only its seen chunk and metadata."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    base = {"sourceId": SRC, "aggregationId": "a2"}
    p.batch({"type": "aggregation.started", **base, "startedAt": "2026-01-02T00:00:00Z"})
    outcomes = p.batch(*({"type": "account", **base, "account": a} for a in ACCOUNTS))
    assert {o.verdict for o in outcomes} == {Verdict.UNCHANGED}
    assert p.writes[-1] == 1  # one seen chunk for 20 accounts, nothing per account


def test_full_completion_deletes_unseen_accounts() -> None:
    """A COMPLETED FULL aggregation deletes the baseline accounts it did not contain."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", ACCOUNTS[1:])
    assert events(outcomes) == [("ACCOUNT_DELETED", "CN=user0,DC=example")]
    # Deleted for good: a later aggregation without it deletes nothing more.
    assert events(p.aggregation("a3", "2026-01-03T00:00:00Z", ACCOUNTS[1:])) == []


@pytest.mark.parametrize("status", ["FAILED", "TERMINATED"])
def test_failed_or_terminated_aggregation_deletes_nothing(status: str) -> None:
    """FAILED and TERMINATED aggregations never produce deletions."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    assert events(p.aggregation("a2", "2026-01-02T00:00:00Z", ACCOUNTS[1:], status=status)) == []
    # The account is still there: the next complete run deletes it.
    outcomes = p.aggregation("a3", "2026-01-03T00:00:00Z", ACCOUNTS[1:])
    assert events(outcomes) == [("ACCOUNT_DELETED", "CN=user0,DC=example")]


def test_delete_guard_suppresses_all_deletions_over_threshold() -> None:
    """Three deletions of 20 accounts (15%) exceed the default 10%: none is emitted."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", ACCOUNTS[3:])
    assert events(outcomes) == []
    assert outcomes[-1].deletes_suppressed == 3
    # Two of 20 (10%) is not more than the threshold: allowed.
    outcomes = p.aggregation("a3", "2026-01-03T00:00:00Z", ACCOUNTS[2:])
    assert [e for e, _ in events(outcomes)] == ["ACCOUNT_DELETED"] * 2


def test_delta_deletes_only_flagged_accounts_at_completion() -> None:
    """In DELTA mode missing accounts stay; `deleted: true` ones go when it completes."""
    p = Partition(_source(deleteThreshold=50))
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    outcomes = p.aggregation(
        "a2", "2026-01-02T00:00:00Z", [acct(5, title="X")], mode="DELTA", deleted=[ACCOUNTS[7]]
    )
    assert events(outcomes) == [
        ("ACCOUNT_UPDATED", "CN=user5,DC=example"),
        ("ACCOUNT_DELETED", "CN=user7,DC=example"),
    ]


def test_deleted_flag_in_full_mode_is_dead_lettered() -> None:
    """`deleted: true` in a FULL aggregation breaks the contract and is dead-lettered."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", ACCOUNTS, deleted=[ACCOUNTS[0]])
    dead = [o for o in outcomes if o.verdict == Verdict.DEAD_LETTERED]
    assert len(dead) == 1 and "DELTA" in (dead[0].reason or "")


def test_rename_keeps_the_account() -> None:
    """Same uuid with a new nativeIdentity is one UPDATED, not a delete and a create."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    moved = {**acct(3, title="Moved"), "nativeIdentity": "CN=user3,OU=New,DC=example"}
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", [*ACCOUNTS[:3], moved, *ACCOUNTS[4:]])
    assert events(outcomes) == [("ACCOUNT_UPDATED", "CN=user3,OU=New,DC=example")]


def test_rename_on_a_case_insensitive_source_frees_the_old_name() -> None:
    """After a rename on a caseInsensitive source, the old nativeIdentity (in any case) no
    longer finds the renamed account: an account without uuid under it is a new one."""
    p = Partition(_source(caseInsensitive=True))
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    moved = {**acct(3), "nativeIdentity": "CN=user3,OU=New,DC=example"}
    renamed = [*ACCOUNTS[:3], moved, *ACCOUNTS[4:]]
    assert events(p.aggregation("a2", "2026-01-02T00:00:00Z", renamed)) == []
    newcomer = {"nativeIdentity": "CN=User3,DC=Example", "attributes": {"title": "Engineer"}}
    outcomes = p.aggregation("a3", "2026-01-03T00:00:00Z", [*renamed, newcomer])
    assert events(outcomes) == [("ACCOUNT_CREATED", "CN=User3,DC=Example")]


def test_records_of_an_older_aggregation_are_stale() -> None:
    """A record from an aggregation that started before the stored state's is ignored."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    base_new = {"sourceId": SRC, "aggregationId": "new"}
    base_old = {"sourceId": SRC, "aggregationId": "old"}
    p.batch(
        {"type": "aggregation.started", **base_old, "startedAt": "2026-01-02T00:00:00Z"},
        {"type": "aggregation.started", **base_new, "startedAt": "2026-01-03T00:00:00Z"},
        {"type": "account", **base_new, "account": acct(1, title="Newer")},
    )
    [late] = p.batch({"type": "account", **base_old, "account": acct(1, title="Older")})
    assert late.verdict == Verdict.STALE and late.events == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe", "invalid JSON"),
        (b'{"type": "account"}', "not a valid aggregation record"),
        (
            json.dumps(
                {"type": "account", "sourceId": "nope", "aggregationId": "a", "account": acct(1)}
            ).encode(),
            "unknown source",
        ),
        (
            json.dumps(
                {"type": "account", "sourceId": SRC, "aggregationId": "zz", "account": acct(1)}
            ).encode(),
            "no aggregation.started",
        ),
    ],
)
def test_poison_records_are_dead_lettered_with_a_reason(value: bytes, reason: str) -> None:
    """Undecodable, invalid, unknown-source and marker-less records get a dead-letter verdict."""
    p = Partition()
    [outcome] = p.batch(value)
    assert outcome.verdict == Verdict.DEAD_LETTERED
    assert reason in (outcome.reason or "")


def test_provisioning_is_applied_to_the_baseline() -> None:
    """The platform's own change is written into the baseline and not reported later (R15)."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    record = {
        "sourceId": SRC,
        "input": {
            "key": {"simple": {"id": "CN=user4,DC=example"}},
            "changes": [
                {"op": "Add", "attribute": "memberOf", "value": "g2"},
                {"op": "Set", "attribute": "title", "value": "Lead"},
            ],
        },
    }
    [applied] = p.batch(record, provisioning=True)
    assert applied.verdict == Verdict.APPLIED
    native = acct(4, title="Lead", groups=("g1", "g2", "g3"))
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", [*ACCOUNTS[:4], native, *ACCOUNTS[5:]])
    [event] = [event_model(e) for o in outcomes for e in o.events]
    assert event.singleValueAttributeChanges == []
    assert [r.value for c in event.entitlementChanges for r in c.added] == ["g3"]


def test_a_full_aggregation_that_lost_records_deletes_nothing() -> None:
    """A dead-lettered account record may be an account still there: no deletions at all."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    broken = {**ACCOUNTS[5], "attributes": "not an object"}
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", [*ACCOUNTS[:5], broken])
    assert outcomes[6].verdict == Verdict.DEAD_LETTERED
    assert events(outcomes) == []
    assert outcomes[-1].deletes_suppressed == 15  # user5..user19, the broken one among them
    # The next clean aggregation deletes what is really gone.
    outcomes = p.aggregation("a3", "2026-01-03T00:00:00Z", ACCOUNTS[:19])
    assert events(outcomes) == [("ACCOUNT_DELETED", "CN=user19,DC=example")]


def test_a_dead_lettered_record_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Abandoning a record the full path decoded reuses that JSON (it still counts as lost)."""
    p = Partition()
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    broken = {**ACCOUNTS[5], "attributes": "not an object"}
    decoded: list[bytes] = []
    loads = partition.codec.loads

    def counting(data: bytes) -> Any:
        decoded.append(data)
        return loads(data)

    monkeypatch.setattr(partition.codec, "loads", counting)
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", [*ACCOUNTS[:5], broken])
    assert outcomes[6].verdict == Verdict.DEAD_LETTERED
    assert len([d for d in decoded if b"not an object" in d]) == 1
    assert outcomes[-1].deletes_suppressed == 15


def test_delete_guard_counts_the_previous_snapshot_only() -> None:
    """R10: accounts created by the aggregation do not dilute the share of deletions."""
    p = Partition(_source(deleteThreshold=10))
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    newcomers = [acct(100 + i) for i in range(20)]
    # 3 of 20 previous accounts gone = 15% > 10%, though only 3 of 40 stored accounts.
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", [*ACCOUNTS[3:], *newcomers])
    assert [e for e in events(outcomes) if e[0] == "ACCOUNT_DELETED"] == []
    assert outcomes[-1].deletes_suppressed == 3


def test_oversized_records_are_dead_lettered_and_count_as_lost() -> None:
    """A record over the size limit is dead-lettered, and its FULL aggregation deletes nothing."""
    p = Partition()
    p.processor = PartitionProcessor(p.registry, max_record_bytes=2048)
    p.aggregation("a1", "2026-01-01T00:00:00Z", ACCOUNTS)
    huge = acct(7, groups=tuple(f"group-{i:04d}" for i in range(400)))
    outcomes = p.aggregation("a2", "2026-01-02T00:00:00Z", [*ACCOUNTS[:7], huge, *ACCOUNTS[8:]])
    assert outcomes[8].verdict == Verdict.DEAD_LETTERED
    assert "NCD_MAX_RECORD_BYTES" in (outcomes[8].reason or "")
    assert events(outcomes) == []
    assert outcomes[-1].deletes_suppressed == 1
