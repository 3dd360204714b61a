"""``diff`` and the worker decide alike: the same inputs give the same events on both paths.

The offline path is :func:`~processor.core.diff_snapshots` over records decoded as ``diff``
decodes file lines; the worker's path is :class:`~processor.worker.partition.PartitionProcessor`
over the aggregation and provisioning records a publisher would write, in small batches
against an in-memory store: a baseline aggregation, the provisioning records (completed
between the two aggregations), then the second aggregation. Event ids differ by design (the
worker's carry the aggregation id), so they are compared without them.

PENDING provisioning records are left out: the worker holds them until an aggregation shows
their changes (docs/provisioning.md), which ``diff``, seeing completed records only, cannot.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from processor import codec
from processor.core import (
    DeleteGuard,
    EntitlementCatalog,
    diff_snapshots,
    provisioning_order,
)
from processor.models import Account, CatalogEntry, ProvisioningRecord, SourceDescriptor
from processor.state.overlay import BatchOverlay
from processor.state.store import InMemoryStateStore
from processor.worker.partition import Outcome, PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry
from tests.helpers import event_model
from tests.unit.conftest import SOURCE_ID, make_source
from tests.unit.test_core_properties import (
    FINITE_SCALARS,
    GUIDS,
    PROPERTY_SETTINGS,
    ZOE_NFC,
    ZOE_NFD,
    attribute_changes,
    attribute_maps,
    sources,
)

BASELINE_AT = "2026-01-01T00:00:00Z"
COMPLETED_AT = "2026-01-01T12:00:00.1234567Z"
SECOND_AT = "2026-01-02T00:00:00Z"
#: Records per worker batch: small, so that every run crosses batch boundaries.
BATCH = 3
CATALOG_ENTRIES = [
    CatalogEntry(attribute="memberOf", value="CN=A", id="ea", name="A"),
    CatalogEntry(attribute="memberOf", value=f"CN={ZOE_NFC}", id="ez", name="Zoë's group"),
    CatalogEntry(attribute="profile", value="CN=B", id="eb", name="B"),
]

Raw = dict[str, Any]


@dataclass
class WorkerPath:
    """The worker's decision path for one source on one partition, in memory."""

    source: SourceDescriptor
    catalog: Sequence[CatalogEntry]

    def __post_init__(self) -> None:
        registry = SourceRegistry()
        registry.put_source(self.source)
        for entry in self.catalog:
            registry.catalog(self.source.id).put(entry)
        self.store = InMemoryStateStore()
        self.processor = PartitionProcessor(registry)
        self.batches = 0

    def feed(self, values: Sequence[tuple[bytes, bool]]) -> list[Outcome]:
        """Decide (value, is_provisioning) records in batches, committing each batch."""
        outcomes = []
        for start in range(0, len(values), BATCH):
            overlay = BatchOverlay(self.store)
            self.processor.begin_batch()
            for value, is_provisioning in values[start : start + BATCH]:
                decide = (
                    self.processor.process_provisioning
                    if is_provisioning
                    else self.processor.process
                )
                outcomes.append(decide(value, overlay))
            self.batches += 1
            self.processor.end_batch(overlay, self.batches)
            self.store.apply(overlay.writes, None)
        return outcomes

    def aggregation(
        self, aggregation_id: str, started_at: str, accounts: list[Raw]
    ) -> list[Outcome]:
        """One COMPLETED FULL aggregation of these raw account objects."""
        base = {"sourceId": self.source.id, "aggregationId": aggregation_id}
        records: list[Raw] = [
            {"type": "aggregation.started", **base, "startedAt": started_at, "mode": "FULL"},
            *({"type": "account", **base, "account": a, "deleted": False} for a in accounts),
            {"type": "aggregation.completed", **base, "status": "COMPLETED"},
        ]
        return self.feed([(codec.dumps(record), False) for record in records])


@dataclass(frozen=True)
class Both:
    """What both paths gave: the events without ids, and the delete guard's counts."""

    events: list[Raw]
    guard: tuple[int, int] | None


def _without_id(event: Raw) -> Raw:
    return {key: value for key, value in event.items() if key != "id"}


def _sorted(events: list[Raw]) -> list[Raw]:
    return sorted(
        events,
        key=lambda e: (e["account"]["nativeIdentity"], e["eventType"], codec.dumps_canonical(e)),
    )


def _guard(guard: DeleteGuard | None) -> tuple[int, int] | None:
    return None if guard is None else (guard.would_delete, guard.previous_count)


def both_paths(
    source: SourceDescriptor,
    previous: list[Raw],
    current: list[Raw],
    provisioning: Sequence[Raw] = (),
    catalog: Sequence[CatalogEntry] = CATALOG_ENTRIES,
) -> Both:
    """Run both paths on the same raw inputs; fail unless they give the same events."""

    def decoded(obj: Raw) -> bytes:
        return codec.dumps(obj)

    records = [ProvisioningRecord.model_validate(codec.loads(decoded(r))) for r in provisioning]
    offline = diff_snapshots(
        source,
        [Account.model_validate(codec.loads(decoded(a))) for a in previous],
        [Account.model_validate(codec.loads(decoded(a))) for a in current],
        EntitlementCatalog(catalog),
        records,
    )
    worker = WorkerPath(source, catalog)
    baseline = worker.aggregation("agg-1", BASELINE_AT, previous)
    ordered = provisioning_order(records)
    provisioned = worker.feed(
        [(codec.dumps(r.model_dump(mode="json", exclude_none=True)), True) for r in ordered]
    )
    second = worker.aggregation("agg-2", SECOND_AT, current)
    for outcome in baseline + provisioned + second:
        assert outcome.verdict is not Verdict.DEAD_LETTERED, outcome.reason
    assert not any(o.events for o in baseline)
    worker_events = [event_model(e).model_dump(mode="json") for o in second for e in o.events]
    offline_events = [event_model(e).model_dump(mode="json") for e in offline.events]
    expected = _sorted([_without_id(e) for e in offline_events])
    assert _sorted([_without_id(e) for e in worker_events]) == expected
    assert _guard(second[-1].guard) == _guard(offline.guard)
    return Both(expected, _guard(offline.guard))


# ----------------------------------------------------------------------------- property

#: People of a directory: (uuid spellings or none, name). Names are never reused by another
#: person, so a streaming worker, which meets accounts one at a time, cannot be asked to
#: undo a match (a name handed from one account to another within one aggregation).
PEOPLE: list[tuple[tuple[str, ...], str]] = [
    ((), "CN=Ann"),
    (GUIDS[0], "CN=Bob"),
    (GUIDS[1], "CN=Cy"),
    (("u1",), "CN=Dee"),
    ((), "CN=Eve"),
    (("AbC+/=",), "CN=Fay"),
]


@st.composite
def directory_snapshots(draw: st.DrawFn, *, current: bool) -> list[Raw]:
    """Some of the people, their uuids spelled either way, renamed now and then."""
    accounts = []
    chosen = draw(st.lists(st.sampled_from(range(len(PEOPLE))), unique=True, max_size=5))
    for index in chosen:
        spellings, name = PEOPLE[index]
        uuid = draw(st.sampled_from(spellings)) if spellings else None
        if current and uuid is not None and draw(st.booleans()):
            name = f"CN=Renamed {index}"
        account: Raw = {
            "nativeIdentity": draw(st.sampled_from([name, name.upper()])),
            "attributes": draw(attribute_maps(FINITE_SCALARS)),
        }
        if uuid is not None:
            account["uuid"] = uuid
        accounts.append(account)
    return accounts


@st.composite
def completed_records(draw: st.DrawFn) -> list[Raw]:
    """Completed provisioning records keyed by a name, or by a uuid with a lookup name."""
    records = []
    for _ in range(draw(st.integers(0, 3))):
        spellings, name = draw(st.sampled_from(PEOPLE))
        _, other_name = draw(st.sampled_from(PEOPLE))
        if spellings and draw(st.booleans()):
            key: Raw = {
                "compound": {
                    "lookupId": draw(st.sampled_from([name, other_name])),
                    "uniqueId": draw(st.sampled_from(spellings)),
                }
            }
        else:
            key = {"simple": {"id": draw(st.sampled_from([name, name.upper()]))}}
        change = draw(attribute_changes())
        output = draw(st.sampled_from([{}, {"attributes": {"title": "out"}}]))
        records.append(
            {
                "sourceId": SOURCE_ID,
                "input": {"key": key, "changes": [change]},
                "output": output,
                "completedAt": COMPLETED_AT,
            }
        )
    return records


@PROPERTY_SETTINGS
@given(
    source=sources(),
    previous=directory_snapshots(current=False),
    current=directory_snapshots(current=True),
    provisioning=completed_records(),
)
def test_diff_and_the_worker_give_the_same_events(
    source: SourceDescriptor,
    previous: list[Raw],
    current: list[Raw],
    provisioning: list[Raw],
) -> None:
    """Any snapshots and completed provisioning give the same events offline and in the worker."""
    both_paths(source, previous, current, provisioning)


# ----------------------------------------------------------------------------- examples

AD = make_source(
    schema=[
        {"name": "title", "type": "STRING"},
        {"name": "employeeNumber", "type": "LONG"},
        {"name": "pwdLastSet", "type": "DATE"},
        {"name": "memberOf", "type": "STRING", "isMulti": True, "isEntitlement": True},
    ],
    delete_threshold=50,
)
GUID_UPPER = "{08EE6C6D-7D02-4978-9417-D92BA6A5ED50}"
GUID_LOWER = "08ee6c6d-7d02-4978-9417-d92ba6a5ed50"


def _account(name: str, uuid: str | None = None, **attributes: Any) -> Raw:
    account: Raw = {"nativeIdentity": name, "attributes": attributes}
    if uuid is not None:
        account["uuid"] = uuid
    return account


def _changes(event: Raw) -> tuple[Any, ...]:
    return (
        event["singleValueAttributeChanges"],
        event["multiValueAttributeChanges"],
        event["entitlementChanges"],
    )


def test_boolean_and_number_on_a_string_attribute_are_a_change_on_both_paths() -> None:
    """true -> 1 on a STRING attribute, and [true] -> [1], are reported by diff and worker."""
    both = both_paths(
        AD,
        [_account("CN=Ann", title=True, memberOf=[True])],
        [_account("CN=Ann", title=1, memberOf=[1])],
    )
    (event,) = both.events
    single, _, entitlements = _changes(event)
    assert single == [{"name": "title", "oldValue": True, "newValue": 1}]
    assert [r["value"] for r in entitlements[0]["added"]] == ["1"]
    assert [r["value"] for r in entitlements[0]["removed"]] == ["true"]


def test_integers_beyond_64_bits_are_compared_and_reported_exactly_on_both_paths() -> None:
    """2**64+1 -> 2**64 is a change with both values digit for digit; LONG text equals it."""
    both = both_paths(
        AD,
        [_account("CN=Ann", employeeNumber=2**64 + 1, title=2**64 + 1)],
        [_account("CN=Ann", employeeNumber=str(2**64 + 1), title=2**64)],
    )
    (event,) = both.events
    assert event["singleValueAttributeChanges"] == [
        {"name": "title", "oldValue": 2**64 + 1, "newValue": 2**64}
    ]
    assert b'"oldValue":18446744073709551617,"newValue":18446744073709551616' in codec.dumps(event)


def test_dates_with_seven_fractional_digits_on_both_paths() -> None:
    """.1234567Z -> .1234568Z is a change; the same instant at another offset is not."""
    both = both_paths(
        AD,
        [
            _account("CN=Ann", pwdLastSet="2026-01-01T00:00:00.1234567Z"),
            _account("CN=Bob", pwdLastSet="2026-01-01T00:00:00.1234567Z"),
        ],
        [
            _account("CN=Ann", pwdLastSet="2026-01-01T00:00:00.1234568Z"),
            _account("CN=Bob", pwdLastSet="2026-01-01T02:00:00.123456700+02:00"),
        ],
    )
    assert [e["account"]["nativeIdentity"] for e in both.events] == ["CN=Ann"]
    assert both.events[0]["singleValueAttributeChanges"][0]["newValue"] == (
        "2026-01-01T00:00:00.1234568Z"
    )


def test_nfd_and_nfc_spellings_are_the_same_value_on_both_paths() -> None:
    """A name in NFD equals it in NFC, single-valued and in memberOf; a real change still
    reports the raw values and finds the catalog entry of the NFC form."""
    both = both_paths(
        AD,
        [
            _account("CN=Ann", title=ZOE_NFC, memberOf=[f"CN={ZOE_NFC}"]),
            _account("CN=Bob", memberOf=["CN=A"]),
        ],
        [
            _account("CN=Ann", title=ZOE_NFD, memberOf=[f"CN={ZOE_NFD}"]),
            _account("CN=Bob", memberOf=["CN=A", f"CN={ZOE_NFD}"]),
        ],
    )
    (event,) = both.events
    assert event["account"]["nativeIdentity"] == "CN=Bob"
    (added,) = event["entitlementChanges"][0]["added"]
    assert (added["id"], added["value"]) == ("ez", f"CN={ZOE_NFD}")
    assert unicodedata.is_normalized("NFD", added["value"])


def test_a_guid_in_another_case_or_without_braces_is_one_account_on_both_paths() -> None:
    """{08EE...} and 08ee... are one account (one update); base64 uuids match exactly."""
    both = both_paths(
        AD,
        [_account("CN=Ann", GUID_UPPER, title="a"), _account("CN=Bob", "AbC=", title="b")],
        [_account("CN=Ann", GUID_LOWER, title="c"), _account("CN=Bob", "abc=", title="b")],
    )
    kinds = [(e["account"]["nativeIdentity"], e["eventType"]) for e in both.events]
    assert kinds == [
        ("CN=Ann", "ACCOUNT_UPDATED"),
        ("CN=Bob", "ACCOUNT_CREATED"),
        ("CN=Bob", "ACCOUNT_DELETED"),
    ]
    assert both.events[0]["account"]["uuid"] == GUID_LOWER


def test_provisioning_keyed_by_unique_id_finds_a_renamed_account_on_both_paths() -> None:
    """A platform change keyed by compound.uniqueId (another GUID spelling) of a renamed
    account is applied, so only the native change on top of it is reported."""
    both = both_paths(
        AD,
        [_account("CN=Ann,OU=Old", GUID_UPPER, title="Analyst", memberOf=["CN=A"])],
        [_account("CN=Ann,OU=New", GUID_LOWER, title="Lead", memberOf=["CN=A", "CN=B"])],
        [
            {
                "sourceId": SOURCE_ID,
                "input": {
                    "key": {"compound": {"lookupId": "CN=Ann,OU=New", "uniqueId": GUID_LOWER}},
                    "changes": [{"op": "Set", "attribute": "title", "value": "Lead"}],
                },
                "completedAt": COMPLETED_AT,
            }
        ],
    )
    (event,) = both.events
    assert event["account"]["nativeIdentity"] == "CN=Ann,OU=New"
    assert event["singleValueAttributeChanges"] == []
    assert [r["value"] for r in event["entitlementChanges"][0]["added"]] == ["CN=B"]


def test_the_delete_guard_holds_back_the_same_deletions_on_both_paths() -> None:
    """Over the threshold neither path deletes, and both report the same counts."""
    previous = [_account(f"CN=U{i}", title="t") for i in range(4)]
    both = both_paths(AD, previous, previous[:1])
    assert both.events == []
    assert both.guard == (3, 4)
