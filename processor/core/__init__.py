"""The pure change-detection core: no I/O, no clock, no logging, no Kafka.

It imports only :mod:`processor.models`, :mod:`processor.errors`, the standard library
and orjson (a pure JSON encoder, for the event id). Entry points: :func:`decide_event` (one
account against its stored state, for the streaming worker; :func:`update_event` for an update
from the stored account's attributes alone) and :func:`diff_snapshots` (two
whole snapshots, for ``diff``). Events come out as :class:`Event` values: the operation and
the body as plain JSON data, written as they are (:mod:`processor.core.event`).
"""

from processor.core.catalog import EntitlementCatalog, catalog_key
from processor.core.detect import (
    AccountChanges,
    build_event,
    decide_event,
    detect_changes,
    event_id,
    update_event,
)
from processor.core.event import Event, EventJson
from processor.core.identity import event_account, event_identity, system_identity_id
from processor.core.match import (
    AccountKeys,
    DuplicateAccountError,
    KeyedMatching,
    Matching,
    account_keys,
    check_unique,
    match_accounts,
    match_keys,
    uuid_key,
)
from processor.core.policy import Kind, SourcePolicy
from processor.core.provisioning import (
    applies_to,
    apply_provisioning,
    is_completed,
    is_not_found,
    provisioning_order,
    same_value,
    shield,
    shows_changes,
    touched_attributes,
)
from processor.core.remediation import remediation_command, wanted
from processor.core.snapshot import (
    DeleteGuard,
    DiffPlan,
    SnapshotDiff,
    apply_all,
    apply_own_changes,
    delete_guard,
    deletes_allowed,
    diff_events,
    diff_snapshots,
    own_changes,
    plan_diff,
)

__all__ = [
    "AccountChanges",
    "AccountKeys",
    "DeleteGuard",
    "DiffPlan",
    "DuplicateAccountError",
    "EntitlementCatalog",
    "Event",
    "EventJson",
    "KeyedMatching",
    "Kind",
    "Matching",
    "SnapshotDiff",
    "SourcePolicy",
    "account_keys",
    "applies_to",
    "apply_all",
    "apply_own_changes",
    "apply_provisioning",
    "build_event",
    "catalog_key",
    "check_unique",
    "decide_event",
    "delete_guard",
    "deletes_allowed",
    "detect_changes",
    "diff_events",
    "diff_snapshots",
    "event_account",
    "event_id",
    "event_identity",
    "is_completed",
    "is_not_found",
    "match_accounts",
    "match_keys",
    "own_changes",
    "plan_diff",
    "provisioning_order",
    "remediation_command",
    "same_value",
    "shield",
    "shows_changes",
    "system_identity_id",
    "touched_attributes",
    "update_event",
    "uuid_key",
    "wanted",
]
