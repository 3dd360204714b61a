"""Diffing two whole snapshots of a source (the ``diff`` command's core): R1-R15."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from processor.core.catalog import EntitlementCatalog
from processor.core.detect import decide_event
from processor.core.event import Event
from processor.core.match import AccountKeys, account_keys, match_keys, uuid_key
from processor.core.policy import SourcePolicy
from processor.core.provisioning import apply_provisioning, is_completed, provisioning_order
from processor.models import Account, ProvisioningRecord, SourceDescriptor


@dataclass(frozen=True, slots=True)
class DeleteGuard:
    """R10 held deletions back: of which source, how many, out of how many, at what threshold.

    ``diff``, ``replay`` and the worker all report it with :meth:`message`.
    """

    source_id: str
    source_name: str
    would_delete: int
    previous_count: int
    threshold_percent: float

    def message(self) -> str:
        """One line, naming the source and the counts (no account data)."""
        return (
            f"delete guard: source {self.source_id} ({self.source_name}): "
            f"{self.would_delete} deletions held back, over the deleteThreshold of "
            f"{self.threshold_percent:g}% of the {self.previous_count} previous accounts; "
            "no ACCOUNT_DELETED events were emitted"
        )


def delete_guard(
    source: SourceDescriptor, previous_count: int, delete_count: int
) -> DeleteGuard | None:
    """R10: the guard's verdict when it holds ``delete_count`` deletions back, else ``None``."""
    if deletes_allowed(previous_count, delete_count, source.deleteThreshold):
        return None
    return DeleteGuard(source.id, source.name, delete_count, previous_count, source.deleteThreshold)


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    """The events of a diff, sorted by account nativeIdentity then eventType, and R10's
    verdict: how many accounts would be deleted and, when their events were dropped, why."""

    events: list[Event] = field(default_factory=list)
    would_delete: int = 0
    guard: DeleteGuard | None = None

    @property
    def deletes_suppressed(self) -> bool:
        """Whether the delete guard held the deletions back."""
        return self.guard is not None


def deletes_allowed(previous_count: int, delete_count: int, threshold_percent: float) -> bool:
    """R10: deletions pass unless they are strictly more than the threshold's share.

    The threshold is read as the decimal it was written as (0.29, not the nearest binary
    fraction), so "exactly at the threshold" is exact.
    """
    return delete_count * 100 <= Decimal(str(threshold_percent)) * previous_count


def own_changes(
    policy: SourcePolicy, previous: Sequence[AccountKeys], records: Sequence[ProvisioningRecord]
) -> dict[int, list[ProvisioningRecord]]:
    """R15: the source's completed provisioning records of each previous account (by
    position), each account's in :func:`provisioning_order`; accounts without any are left out.

    A record is for the account whose uuid is its ``compound.uniqueId`` when there is one
    (docs/records.md), else for the account its target nativeIdentity names (and then only if
    that account has no other uuid: :func:`apply_provisioning`). The worker finds the
    account the same way.
    """
    ordered = [
        record
        for record in provisioning_order(records)
        if record.sourceId == policy.source.id and is_completed(record)
    ]
    if not ordered:
        return {}
    keyed = any(record.unique_id() is not None for record in ordered)
    uuids = {k.uuid_key for k in previous if k.uuid_key is not None} if keyed else set()
    by_uuid: dict[str, list[int]] = {}
    by_target: dict[str, list[int]] = {}
    for position, record in enumerate(ordered):
        unique_id = record.unique_id()
        if unique_id is not None and uuid_key(unique_id) in uuids:
            by_uuid.setdefault(uuid_key(unique_id), []).append(position)
        elif (target := record.target()) is not None:
            by_target.setdefault(policy.identity_key(target), []).append(position)
    found: dict[int, list[ProvisioningRecord]] = {}
    for index, keys in enumerate(previous):
        positions = set(by_target.get(policy.identity_key(keys.native_identity), ()))
        if keys.uuid_key is not None:
            positions.update(by_uuid.get(keys.uuid_key, ()))
        if positions:
            found[index] = [ordered[position] for position in sorted(positions)]
    return found


def apply_all(
    policy: SourcePolicy, account: Account, records: Iterable[ProvisioningRecord]
) -> Account:
    """``account`` after each of ``records`` in turn (:func:`apply_provisioning`)."""
    for record in records:
        account = apply_provisioning(policy, account, record)
    return account


def apply_own_changes(
    policy: SourcePolicy, previous: Sequence[Account], records: Sequence[ProvisioningRecord]
) -> list[Account]:
    """R15: the previous snapshot with the source's completed provisioning records applied
    (:func:`own_changes` says which record is for which account)."""
    found = own_changes(policy, [account_keys(a) for a in previous], records)
    return [apply_all(policy, a, found.get(i, ())) for i, a in enumerate(previous)]


@dataclass(frozen=True, slots=True)
class DiffPlan:
    """What a diff decides, by account position, before any account is looked at.

    ``items`` are (nativeIdentity of the event's account, previous index or -1, current
    index or -1), sorted by that nativeIdentity: the order the events come out in.
    ``own_changes`` are the provisioning records of previous accounts (:func:`own_changes`).
    """

    items: list[tuple[str, int, int]]
    own_changes: dict[int, list[ProvisioningRecord]]
    would_delete: int
    guard: DeleteGuard | None


def plan_diff(
    policy: SourcePolicy,
    previous: Sequence[AccountKeys],
    current: Sequence[AccountKeys],
    provisioning: Sequence[ProvisioningRecord] = (),
) -> DiffPlan:
    """R1 and R10 over the snapshots' keys: which accounts pair, which were created, which
    deleted (none when the delete guard holds them back).

    Raises :class:`~processor.core.match.DuplicateAccountError` (positions as given) when a
    snapshot repeats a uuid or nativeIdentity.
    """
    matching = match_keys(policy, previous, current)
    would_delete = len(matching.deleted)
    guard = delete_guard(policy.source, len(previous), would_delete)
    items = [(current[j].native_identity, i, j) for i, j in matching.pairs]
    items += [(current[j].native_identity, -1, j) for j in matching.created]
    if guard is None:
        items += [(previous[i].native_identity, i, -1) for i in matching.deleted]
    items.sort(key=lambda item: item[0])
    found = own_changes(policy, previous, provisioning)
    return DiffPlan(items, found, would_delete, guard)


def diff_events(
    policy: SourcePolicy,
    plan: DiffPlan,
    previous: Callable[[int], Account],
    current: Callable[[int], Account],
    catalog: EntitlementCatalog,
    same: Callable[[int, int], bool] | None = None,
) -> Iterator[Event]:
    """The events of a plan, sorted by account nativeIdentity then eventType (then id).

    ``previous`` and ``current`` give the account at a position: each is asked only for
    the accounts that may have an event. ``same(i, j)``, when given, tells that two paired
    accounts are equal as read, so that (without provisioning records) they have none.
    """
    group: list[Event] = []
    name: str | None = None
    for native_identity, i, j in plan.items:
        if native_identity != name:
            yield from sorted(group, key=_event_order)
            group, name = [], native_identity
        records = plan.own_changes.get(i, ()) if i >= 0 else ()
        if i >= 0 and j >= 0 and not records and same is not None and same(i, j):
            continue
        before = None if i < 0 else apply_all(policy, previous(i), records)
        event = decide_event(policy, before, None if j < 0 else current(j), catalog)
        if event is not None:
            group.append(event)
    yield from sorted(group, key=_event_order)


def _event_order(event: Event) -> tuple[str, str, str]:
    return (event.native_identity, event.operation, event.id)


def diff_snapshots(
    source: SourceDescriptor,
    previous: Sequence[Account],
    current: Sequence[Account],
    catalog: EntitlementCatalog,
    provisioning: Sequence[ProvisioningRecord] = (),
) -> SnapshotDiff:
    """The events between two snapshots of one source, held in memory (``diff`` reads its
    files with :func:`plan_diff` and :func:`diff_events` instead, one account at a time).

    Raises :class:`~processor.core.match.DuplicateAccountError` when a snapshot repeats a
    uuid or nativeIdentity (``index`` refers to the given sequences).
    """
    policy = SourcePolicy.from_source(source)
    keys = [account_keys(a) for a in previous], [account_keys(a) for a in current]
    plan = plan_diff(policy, *keys, provisioning)
    events = list(diff_events(policy, plan, previous.__getitem__, current.__getitem__, catalog))
    return SnapshotDiff(events, plan.would_delete, plan.guard)
