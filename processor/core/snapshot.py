"""Diffing two whole snapshots of a source (the ``diff`` command's core): R1-R15."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from processor.core.catalog import EntitlementCatalog
from processor.core.detect import decide_event
from processor.core.match import match_accounts, uuid_key
from processor.core.policy import SourcePolicy
from processor.core.provisioning import apply_provisioning, is_completed, provisioning_order
from processor.models import Account, AccountEvent, ProvisioningRecord, SourceDescriptor


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

    events: list[AccountEvent] = field(default_factory=list)
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


def apply_own_changes(
    policy: SourcePolicy, previous: Sequence[Account], records: Sequence[ProvisioningRecord]
) -> list[Account]:
    """R15: the previous snapshot with the source's completed provisioning records applied.

    A record is for the account whose uuid is its ``compound.uniqueId`` when there is one
    (CONTRACTS 1.4), else for the account its target nativeIdentity names (and then only if
    that account has no other uuid: :func:`apply_provisioning`); each account gets its
    records in :func:`provisioning_order`. The worker finds the account the same way.
    """
    by_uuid: dict[str, list[int]] = {}
    by_target: dict[str, list[int]] = {}
    ordered = [
        record
        for record in provisioning_order(records)
        if record.sourceId == policy.source.id and is_completed(record)
    ]
    keyed = any(record.unique_id() is not None for record in ordered)
    uuids = {uuid_key(a.uuid) for a in previous if a.uuid} if keyed else set()
    for position, record in enumerate(ordered):
        unique_id = record.unique_id()
        if unique_id is not None and uuid_key(unique_id) in uuids:
            by_uuid.setdefault(uuid_key(unique_id), []).append(position)
        elif (target := record.target()) is not None:
            by_target.setdefault(policy.identity_key(target), []).append(position)
    if not ordered:
        return list(previous)
    result: list[Account] = []
    for account in previous:
        positions = set(by_target.get(policy.identity_key(account.nativeIdentity), ()))
        if account.uuid:
            positions.update(by_uuid.get(uuid_key(account.uuid), ()))
        for position in sorted(positions):
            account = apply_provisioning(policy, account, ordered[position])
        result.append(account)
    return result


def diff_snapshots(
    source: SourceDescriptor,
    previous: Sequence[Account],
    current: Sequence[Account],
    catalog: EntitlementCatalog,
    provisioning: Sequence[ProvisioningRecord] = (),
) -> SnapshotDiff:
    """The events between two snapshots of one source.

    Raises :class:`~processor.core.match.DuplicateAccountError` when a snapshot repeats a
    uuid or nativeIdentity (``index`` refers to the given sequences: applying provisioning
    keeps the previous snapshot's order).
    """
    policy = SourcePolicy.from_source(source)
    matching = match_accounts(policy, apply_own_changes(policy, previous, provisioning), current)
    would_delete = len(matching.deleted)
    guard = delete_guard(source, len(previous), would_delete)
    events: list[AccountEvent] = []
    for before, after in matching.pairs:
        _append(events, decide_event(policy, before, after, catalog))
    for after in matching.created:
        _append(events, decide_event(policy, None, after, catalog))
    if guard is None:
        for before in matching.deleted:
            _append(events, decide_event(policy, before, None, catalog))
    events.sort(key=lambda event: (event.account.nativeIdentity, event.eventType, event.id))
    return SnapshotDiff(events, would_delete, guard)


def _append(events: list[AccountEvent], event: AccountEvent | None) -> None:
    if event is not None:
        events.append(event)
