"""The aggregation lifecycle of one input partition (CONTRACTS.md section 5).

:class:`PartitionProcessor` decides one ``ncd.aggregations`` record at a time against the
partition's state (a read-your-writes overlay the runner commits after the Kafka transaction
that carries the outputs). It never touches Kafka, the clock or the log: it returns an
:class:`Outcome` with a verdict, the events to publish and, for bad input, the reason.

Lifecycle per source and partition:

- ``aggregation.started`` registers the aggregation (start time, mode).
- ``account`` records are matched to stored state (R1: uuid, else nativeIdentity) and
  diffed with the core; until the source's first COMPLETED aggregation (the baseline) they
  are only stored. An unchanged account (same digest) costs one read and no write; which
  accounts an aggregation saw is kept in memory and written once per batch as one chunk.
- ``aggregation.completed`` COMPLETED FULL deletes the baseline's accounts it did not see,
  COMPLETED DELTA those flagged ``deleted: true``; both under the delete guard (R10).
  FAILED and TERMINATED delete nothing.
- A record of an aggregation older than the state it would overwrite is ignored (stale).

A record that cannot be decided leaves no trace: each decision starts at a savepoint of the
overlay and of this processor's per-batch memory, and :meth:`PartitionProcessor.abandon`
returns to it (the runner calls it for any failure of the record, its outputs included), so
the record is dead-lettered with its reason and the next one is decided as if it never came.

Provisioning records (``ncd.provisioning``, the platform's own changes; docs/provisioning.md)
are applied to the stored account (R15), held until an unknown account appears, kept while
PENDING, withdrawn when FAILED, and a ``notFound`` answer deletes the account at once; the
state this needs is handled by :class:`~processor.worker.own_changes.OwnChanges`. For each
native event of a source that asks for remediation, the outcome carries the command that
reverts it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from processor import codec
from processor.core import (
    DeleteGuard,
    SourcePolicy,
    apply_provisioning,
    decide_event,
    delete_guard,
    is_not_found,
    remediation_command,
    touched_attributes,
    wanted,
)
from processor.errors import InputError
from processor.keys import account_record_key, record_key
from processor.models import (
    Account,
    AccountEvent,
    AccountRecord,
    AggregationCompleted,
    AggregationMode,
    AggregationRecord,
    AggregationStarted,
    AggregationStatus,
    ProvisioningRecord,
    ProvisioningStatus,
    RemediationCommand,
    epoch_ms,
)
from processor.state.overlay import BatchOverlay
from processor.worker.envelope import AccountBytes, account_bytes
from processor.worker.own_changes import OwnChanges, completed_ms
from processor.worker.registry import SourceRegistry
from processor.worker.state import (
    NO_INPUT_DIGEST,
    AggregationInfo,
    SourceMeta,
    StoredAccount,
    account_key,
    digest,
    k_account,
    k_accounts,
    k_gone,
    k_index,
    k_meta,
    k_pending_delete,
    k_seen,
    k_shield,
    record_id,
)

#: (input digest, bytes digest) of state not stored from an aggregation record's account.
_NO_INPUTS = (NO_INPUT_DIGEST, NO_INPUT_DIGEST)

_RECORD = TypeAdapter[AggregationStarted | AccountRecord | AggregationCompleted](AggregationRecord)


UNKNOWN_SOURCE = "unknown source"
#: Default bound on how long provisioning records wait for their account (or, PENDING, for
#: the aggregation that shows them): an hour covers a slow aggregation of a large source.
DEFAULT_HOLD_S = 3600.0


class Verdict(StrEnum):
    """What became of one input record."""

    EMITTED = "emitted"  # one or more events
    UNCHANGED = "unchanged"  # same as the stored state: nothing written
    STORED = "stored"  # state updated, nothing to report (baseline, or unmonitored change)
    MARKER = "marker"  # an aggregation.started / completed marker
    STALE = "stale"  # from an aggregation older than the stored state: ignored
    APPLIED = "applied"  # a provisioning record applied to the stored baseline (R15)
    HELD = "held"  # a provisioning record kept: PENDING, or its account is not known yet
    IGNORED = "ignored"  # a provisioning record with nothing to do (failed, already seen)
    DEAD_LETTERED = "dead_lettered"


@dataclass(slots=True)
class Outcome:
    verdict: Verdict
    events: list[AccountEvent] = field(default_factory=list)
    reason: str | None = None
    source_id: str | None = None
    #: Set on a completion whose deletions the delete guard suppressed: how many.
    deletes_suppressed: int = 0
    #: Set when R10's threshold held them back: the counts, as ``diff`` reports them.
    guard: DeleteGuard | None = None
    #: Set on a completion: the aggregation's status and mode.
    completed: tuple[str, str] | None = None
    #: Commands reverting the events, for sources that ask for remediation.
    remediations: list[RemediationCommand] = field(default_factory=list)
    #: Set on an account record: the record key its value implies (``sourceId/<uuid or
    #: nativeIdentity>``, :func:`processor.keys.record_key`); the runner checks the real one.
    record_key: bytes | None = None


def _dead(reason: str, source_id: str | None = None) -> Outcome:
    return Outcome(Verdict.DEAD_LETTERED, reason=reason, source_id=source_id)


class PartitionProcessor:
    """Decides the records of one input partition against its state."""

    def __init__(
        self,
        registry: SourceRegistry,
        *,
        hold_s: float = DEFAULT_HOLD_S,
        max_record_bytes: int | None = None,
    ) -> None:
        self._registry = registry
        self._max_record_bytes = max_record_bytes
        self._own = OwnChanges(int(hold_s * 1000))
        self._meta: dict[str, SourceMeta] = {}
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._dirty_meta: set[str] = set()
        # How to undo the current record's changes to the three above (see ``abandon``).
        self._undo: list[Callable[[], None]] = []
        self._touched: set[str] = set()
        self._latest_ms: int | None = None

    # ----------------------------------------------------------------- batch bracket

    def begin_batch(self, latest_ms: int | None = None) -> None:
        """Forget anything cached from an aborted batch.

        ``latest_ms``: instants (``startedAt``, ``completedAt``) after it are dead-lettered;
        the runner passes its clock plus ``NCD_FUTURE_ALLOWANCE_S`` (``None``: no bound).
        """
        self._latest_ms = latest_ms
        self._meta.clear()
        self._seen.clear()
        self._dirty_meta.clear()
        self._undo.clear()
        self._touched.clear()

    def end_batch(self, state: BatchOverlay, batch_id: int) -> None:
        """Write the batch's seen-account chunks and changed metadata into ``state``."""
        for (source_id, aggregation_id), keys in self._seen.items():
            for n, chunk in enumerate(self._chunks(sorted(keys))):
                state.put(k_seen(source_id, aggregation_id, batch_id, n), codec.dumps(chunk))
        for source_id in self._dirty_meta:
            state.put(k_meta(source_id), self._meta[source_id].encode())
        self.begin_batch(self._latest_ms)

    def _chunks(self, keys: list[str]) -> list[list[str]]:
        """``keys`` in runs whose JSON stays within half the record size limit (if any)."""
        if self._max_record_bytes is None:
            return [keys] if keys else []
        budget = self._max_record_bytes // 2
        chunks: list[list[str]] = []
        size = budget
        for key in keys:
            cost = len(key.encode("utf-8", "surrogatepass")) + 3  # quotes and a comma
            if size + cost > budget:
                chunks.append([])
                size = 2
            chunks[-1].append(key)
            size += cost
        return chunks

    def _not_future(self, instant_ms: int, name: str) -> int:
        """``instant_ms``, unless it is later than the batch's latest allowed instant."""
        if self._latest_ms is not None and instant_ms > self._latest_ms:
            raise InputError(f"{name} is in the future (beyond NCD_FUTURE_ALLOWANCE_S)")
        return instant_ms

    # ----------------------------------------------------------------- savepoint

    def _savepoint(self, state: BatchOverlay) -> None:
        state.savepoint()
        self._undo.clear()
        self._touched.clear()

    def abandon(self, value: bytes | None, state: BatchOverlay, reason: str) -> Outcome:
        """Undo everything the record being decided did, and dead-letter it with ``reason``.

        The record still counts as rejected against its running aggregation (a FULL
        aggregation that lost records deletes nothing), when it names one.
        """
        state.rollback()
        for undo in reversed(self._undo):
            undo()
        self._savepoint(state)
        obj = None
        if value is not None:
            with contextlib.suppress(InputError):
                obj = codec.loads(value)
        source_id = obj.get("sourceId") if isinstance(obj, dict) else None
        if not isinstance(source_id, str) or self._registry.policy(source_id) is None:
            return _dead(reason)
        # A key this record names may not even be valid: then it names no aggregation.
        with contextlib.suppress(InputError, TypeError, ValueError):
            self._reject(obj, state)
        return _dead(reason, source_id)

    def _changing(self, source_id: str) -> SourceMeta:
        """The cached metadata of ``source_id``, about to change (``abandon`` restores it)."""
        meta = self._meta[source_id]
        if source_id not in self._touched:
            self._touched.add(source_id)
            copy, dirty = meta.copy(), source_id in self._dirty_meta
            self._undo.append(lambda: self._restore_meta(source_id, copy, dirty))
        self._dirty_meta.add(source_id)
        return meta

    def _restore_meta(self, source_id: str, meta: SourceMeta, dirty: bool) -> None:
        self._meta[source_id] = meta
        if not dirty:
            self._dirty_meta.discard(source_id)

    def _saw(self, source_id: str, aggregation_id: str, key: str) -> None:
        """Note that an aggregation contained the account stored under ``key``."""
        seen = self._seen.setdefault((source_id, aggregation_id), set())
        if key not in seen:
            seen.add(key)
            self._undo.append(lambda: seen.discard(key))

    # ----------------------------------------------------------------- records

    def process(self, value: bytes | None, state: BatchOverlay) -> Outcome:
        """Decide one aggregation record."""
        self._savepoint(state)
        if value is None:
            return _dead("tombstone on the aggregations topic")
        try:
            return self._aggregation_record(value, state)
        except InputError as exc:
            return self.abandon(value, state, exc.reason)

    def _aggregation_record(self, value: bytes, state: BatchOverlay) -> Outcome:
        seen_bytes = None
        if self._max_record_bytes is None or len(value) <= self._max_record_bytes:
            seen_bytes = account_bytes(value)
            if seen_bytes is not None and (fast := self._unchanged_bytes(seen_bytes, state)):
                return fast
        obj = codec.loads(value)
        if (too_big := self._too_big(value)) is not None:
            self._reject(obj, state)
            return too_big
        inputs = _NO_INPUTS
        if isinstance(obj, dict) and obj.get("type") == "account":
            account = obj.get("account")
            if isinstance(account, dict):
                inputs = (
                    digest(account),
                    NO_INPUT_DIGEST if seen_bytes is None else seen_bytes.digest,
                )
                fast = self._unchanged_input(obj, account, inputs, state)
                if fast is not None:
                    return fast
        try:
            record = _RECORD.validate_python(obj)
        except ValidationError as exc:
            raise InputError(codec.describe_validation_error(exc, "aggregation record")) from exc
        policy = self._registry.policy(record.sourceId)
        if policy is None:
            return _dead(UNKNOWN_SOURCE, record.sourceId)
        if isinstance(record, AggregationStarted):
            return self._started(record, state)
        if isinstance(record, AccountRecord):
            outcome = self._account(policy, record, state, inputs)
            outcome.record_key = account_record_key(record.sourceId, record.account)
            return outcome
        return self._completed(policy, record, state)

    def _reject(self, obj: Any, state: BatchOverlay) -> None:
        """Count a dead-lettered account record against its running aggregation, if known."""
        if not isinstance(obj, dict) or obj.get("type") != "account":
            return
        source_id, aggregation_id = obj.get("sourceId"), obj.get("aggregationId")
        if not isinstance(source_id, str) or not isinstance(aggregation_id, str):
            return
        if self._registry.policy(source_id) is None:
            return
        if aggregation_id in self._meta_of(source_id, state).running:
            self._changing(source_id).running[aggregation_id].rejected += 1

    def _too_big(self, value: bytes) -> Outcome | None:
        """The dead-letter outcome of a record over the size limit, else ``None``."""
        if self._max_record_bytes is None or len(value) <= self._max_record_bytes:
            return None
        return _dead(f"record of {len(value)} bytes is over the limit (NCD_MAX_RECORD_BYTES)")

    def _unchanged_bytes(self, seen: AccountBytes, state: BatchOverlay) -> Outcome | None:
        """The byte path: an account record whose ``account`` bytes are the very bytes its
        state was last stored from is unchanged; decided without decoding the account (those
        bytes were validated when they were stored). ``None``: the next path decides."""
        source_id, aggregation_id = seen.source_id, seen.aggregation_id
        found = self._stored(source_id, aggregation_id, seen.native_identity, seen.uuid, state)
        if found is None:
            return None
        key, raw, agg = found
        if not StoredAccount.matches_bytes(raw, agg.started_ms, seen.digest):
            return None
        self._saw(source_id, aggregation_id, key)
        expected = record_key(source_id, seen.uuid, seen.native_identity)
        return Outcome(Verdict.UNCHANGED, source_id=source_id, record_key=expected)

    def _stored(
        self,
        source_id: str,
        aggregation_id: str,
        native: str,
        uuid: str | None,
        state: BatchOverlay,
    ) -> tuple[str, bytes, AggregationInfo] | None:
        """(state key, stored value, running aggregation) of an account record's account, if
        its source is known, its aggregation running and the account stored."""
        policy = self._registry.policy(source_id)
        if policy is None:
            return None
        agg = self._meta_of(source_id, state).running.get(aggregation_id)
        if agg is None:
            return None
        key, raw = self._lookup(source_id, uuid, policy.identity_key(native), state)
        return None if raw is None else (key, raw, agg)

    def _unchanged_input(
        self,
        obj: dict[str, Any],
        account: dict[str, Any],
        inputs: tuple[bytes, bytes],
        state: BatchOverlay,
    ) -> Outcome | None:
        """The fast path: an account record whose ``account`` is the very input its state was
        last stored from (canonical form: key order and spacing do not matter) is unchanged;
        decided without validating the record (that input was validated when it was stored).
        Its bytes differed from the stored ones, so their digest is stored (once) for the byte
        path. ``None`` sends the record down the full path, which decides everything else
        (stale, changed, malformed) exactly as before.
        """
        source_id, aggregation_id = obj.get("sourceId"), obj.get("aggregationId")
        native, uuid = account.get("nativeIdentity"), account.get("uuid")
        if (
            obj.get("deleted", False) is not False
            or not isinstance(source_id, str)
            or not isinstance(aggregation_id, str)
            or not isinstance(native, str)
            or not (uuid is None or isinstance(uuid, str))
        ):
            return None
        found = self._stored(source_id, aggregation_id, native, uuid, state)
        if found is None:
            return None
        key, raw, agg = found
        if not StoredAccount.matches_input(raw, agg.started_ms, inputs[0]):
            return None
        self._learn(source_id, key, StoredAccount.decode(raw), inputs, state)
        self._saw(source_id, aggregation_id, key)
        expected = record_key(source_id, uuid, native)
        return Outcome(Verdict.UNCHANGED, source_id=source_id, record_key=expected)

    def _learn(
        self,
        source_id: str,
        key: str,
        stored: StoredAccount,
        inputs: tuple[bytes, bytes],
        state: BatchOverlay,
    ) -> None:
        """Store the input and bytes digests of the record an unchanged account came in, when
        they are new (a new key order, state written before the digest existed or by
        provisioning), so that the next identical record takes the quickest path."""
        input_digest, bytes_digest = inputs
        if bytes_digest == NO_INPUT_DIGEST:  # bytes the byte path could not read: keep the
            bytes_digest = stored.bytes_digest  # stored ones (they still give this account)
        if (stored.input_digest, stored.bytes_digest) != (input_digest, bytes_digest):
            new = replace(stored, input_digest=input_digest, bytes_digest=bytes_digest)
            state.put(k_account(source_id, key), new.encode())

    def process_provisioning(self, value: bytes | None, state: BatchOverlay) -> Outcome:
        """Decide one provisioning record (R15; docs/provisioning.md).

        Completed: applied to the stored account (unless an aggregation that started after
        it already stored the account), or held until the account appears. PENDING: kept
        until an aggregation shows its changes. FAILED (or another error): withdraws the
        pending one. ``notFound``: the account is deleted now, with ACCOUNT_DELETED.
        The stored ``asOf`` is kept: provisioning does not make the state newer than an
        aggregation.
        """
        self._savepoint(state)
        if value is None:
            return _dead("tombstone on the provisioning topic")
        if (too_big := self._too_big(value)) is not None:
            return too_big
        try:
            return self._provisioning_record(value, state)
        except InputError as exc:
            return self.abandon(value, state, exc.reason)

    def _provisioning_record(self, value: bytes, state: BatchOverlay) -> Outcome:
        record = codec.validate(ProvisioningRecord, codec.loads(value), "provisioning record")
        done = completed_ms(record)
        if done is not None:
            self._not_future(done, "completedAt")
        source_id = record.sourceId
        policy = self._registry.policy(source_id)
        if policy is None:
            return _dead(UNKNOWN_SOURCE, source_id)
        target = record.target()
        if target is None:
            return _dead("provisioning record names no account", source_id)
        identity = policy.identity_key(target)
        if is_not_found(record):
            return self._not_found(policy, record, identity, done, state)
        ref = done if done is not None else self._meta_of(source_id, state).latest_start()
        if record.error is not None or record.status is ProvisioningStatus.FAILED:
            self._own.withdraw(state, identity, record)
            return Outcome(Verdict.IGNORED, source_id=source_id)
        if record.status is ProvisioningStatus.PENDING:
            self._own.pend(state, identity, record, ref)
            return Outcome(Verdict.HELD, source_id=source_id)
        self._own.withdraw(state, identity, record)
        key = self._provisioned(record, identity, state)
        raw = None if key is None else state.get(k_account(source_id, key))
        if key is None or raw is None:
            self._own.hold(state, identity, record, ref)
            return Outcome(Verdict.HELD, source_id=source_id)
        stored = StoredAccount.decode(raw)
        if done is not None and done <= stored.as_of_ms:
            # An aggregation that started after the change already read and stored it.
            return Outcome(Verdict.IGNORED, source_id=source_id)
        previous = Account.model_validate(codec.loads(stored.account_json))
        updated = apply_provisioning(policy, previous, record)
        account_obj = updated.model_dump(mode="json", exclude_none=True)
        new = StoredAccount(stored.as_of_ms, digest(account_obj), codec.dumps(account_obj))
        state.put(k_account(source_id, key), new.encode())
        if done is not None:
            touched = touched_attributes(previous, updated, record)
            self._own.open_window(state, source_id, key, touched, done)
        return Outcome(Verdict.APPLIED, source_id=source_id)

    def _not_found(
        self,
        policy: SourcePolicy,
        record: ProvisioningRecord,
        identity: str,
        done: int | None,
        state: BatchOverlay,
    ) -> Outcome:
        """The connector found no account: report its deletion now, once."""
        source_id = record.sourceId
        key = self._provisioned(record, identity, state)
        previous = None if key is None else self._drop(policy, source_id, key, state)
        if previous is None:
            return Outcome(Verdict.IGNORED, source_id=source_id)
        if done is not None:
            self._own.mark_gone(state, source_id, identity, done)
        if not self._meta_of(source_id, state).baseline:
            return Outcome(Verdict.APPLIED, source_id=source_id)
        context = "notFound/" + record_id(record.model_dump(mode="json", exclude_none=True))
        event = decide_event(
            policy, previous, None, self._registry.catalog(source_id), context=context
        )
        if event is None:
            return Outcome(Verdict.APPLIED, source_id=source_id)
        return self._emitted(policy, [event], source_id)

    def _provisioned(
        self, record: ProvisioningRecord, identity: str, state: BatchOverlay
    ) -> str | None:
        """The state key of a provisioning record's account: by ``compound.uniqueId``
        when a stored account has that uuid (CONTRACTS 1.4), else by nativeIdentity."""
        unique_id = record.unique_id()
        if unique_id is not None:
            key = account_key(unique_id, identity)
            if state.get(k_account(record.sourceId, key)) is not None:
                return key
        indexed = state.get(k_index(record.sourceId, identity))
        return None if indexed is None else indexed.decode()

    def _emitted(self, policy: SourcePolicy, events: list[AccountEvent], source_id: str) -> Outcome:
        """An EMITTED outcome with the remediation commands the source asks for."""
        revert = wanted(policy.source.remediation)
        commands = [c for e in events if (c := remediation_command(e, revert)) is not None]
        return Outcome(Verdict.EMITTED, events=events, source_id=source_id, remediations=commands)

    def _meta_of(self, source_id: str, state: BatchOverlay) -> SourceMeta:
        meta = self._meta.get(source_id)
        if meta is None:
            raw = state.get(k_meta(source_id))
            meta = SourceMeta() if raw is None else SourceMeta.decode(raw)
            self._meta[source_id] = meta
        return meta

    def _started(self, record: AggregationStarted, state: BatchOverlay) -> Outcome:
        started = self._not_future(epoch_ms(record.startedAt), "startedAt")
        source_id = record.sourceId
        meta = self._meta_of(source_id, state)
        if record.aggregationId in meta.done:
            return Outcome(Verdict.STALE, source_id=source_id)
        info = AggregationInfo(started, record.mode.value)
        self._changing(source_id).running[record.aggregationId] = info
        for dropped in meta.overdue():  # bounded: a flood of markers cannot grow the metadata
            if dropped == record.aggregationId:
                raise InputError("older than every running aggregation of its source, at the cap")
            del meta.running[dropped]
            self._forget(source_id, dropped, state)
        return Outcome(Verdict.MARKER, source_id=record.sourceId)

    def _running(
        self, source_id: str, aggregation_id: str, state: BatchOverlay
    ) -> tuple[SourceMeta, AggregationInfo | None, bool]:
        """(meta, the running aggregation or None, whether it is a completed one)."""
        meta = self._meta_of(source_id, state)
        return meta, meta.running.get(aggregation_id), aggregation_id in meta.done

    def _account(
        self,
        policy: SourcePolicy,
        record: AccountRecord,
        state: BatchOverlay,
        inputs: tuple[bytes, bytes] = (NO_INPUT_DIGEST, NO_INPUT_DIGEST),
    ) -> Outcome:
        source_id = record.sourceId
        meta, agg, done = self._running(source_id, record.aggregationId, state)
        if agg is None:
            if done:
                return Outcome(Verdict.STALE, source_id=source_id)
            raise InputError("no aggregation.started for this aggregation in this partition")
        current = record.account
        identity = policy.identity_key(current.nativeIdentity)
        key, stored_raw = self._lookup(source_id, current.uuid, identity, state)
        self._saw(source_id, record.aggregationId, key)
        if record.deleted:
            if agg.mode != AggregationMode.DELTA:
                raise InputError("deleted: true is only allowed in DELTA aggregations")
            if stored_raw is not None:
                state.put(k_pending_delete(source_id, record.aggregationId, key), b"")
            return Outcome(Verdict.STORED, source_id=source_id)
        account_obj = current.model_dump(mode="json", exclude_none=True)
        new_digest = digest(account_obj)
        previous: Account | None = None
        window: dict[str, int] = {}
        if stored_raw is not None:
            stored = StoredAccount.decode(stored_raw)
            if stored.as_of_ms > agg.started_ms:
                return Outcome(Verdict.STALE, source_id=source_id)
            if stored.digest == new_digest:
                # Same account, perhaps in a new input form (or state written by provisioning).
                self._learn(source_id, key, stored, inputs, state)
                return Outcome(Verdict.UNCHANGED, source_id=source_id)
            previous = Account.model_validate(codec.loads(stored.account_json))
            shielded = self._own.shielded(state, source_id, key, agg.started_ms, current, previous)
            if shielded is not current:  # the race window: keep what provisioning set
                current = shielded
                inputs = _NO_INPUTS  # the state is no longer this input
                account_obj = current.model_dump(mode="json", exclude_none=True)
                new_digest = digest(account_obj)
                if stored.digest == new_digest:
                    return Outcome(Verdict.UNCHANGED, source_id=source_id)
        else:
            gone = self._own.gone_at(state, source_id, identity)
            if gone is not None:
                if agg.started_ms < gone:  # read before the connector found it gone
                    return Outcome(Verdict.STALE, source_id=source_id)
                state.delete(k_gone(source_id, identity))
            released, window = self._own.release(
                policy, state, source_id, identity, current, agg.started_ms
            )
            if released is not current:
                current = released
                inputs = _NO_INPUTS  # held provisioning changed it
                account_obj = current.model_dump(mode="json", exclude_none=True)
                new_digest = digest(account_obj)
        if stored_raw is None:
            self._changing(source_id)
            agg.created += 1
        new_key = self._store(
            source_id,
            key,
            identity,
            previous,
            policy,
            agg,
            account_obj,
            (new_digest, *inputs),
            state,
        )
        if window:
            self._own.open_window(state, source_id, new_key, set(window), max(window.values()))
        if not meta.baseline:
            return Outcome(Verdict.STORED, source_id=source_id)
        if previous is not None:
            previous = self._own.absorb(policy, state, source_id, identity, previous, current)
        event = decide_event(
            policy,
            previous,
            current,
            self._registry.catalog(source_id),
            context=record.aggregationId,
        )
        if event is None:
            return Outcome(Verdict.STORED, source_id=source_id)
        return self._emitted(policy, [event], source_id)

    def _lookup(
        self, source_id: str, uuid: str | None, identity: str, state: BatchOverlay
    ) -> tuple[str, bytes | None]:
        """R1: the state key of an incoming account and its stored value, if matched."""
        if uuid:
            key = account_key(uuid, identity)
            raw = state.get(k_account(source_id, key))
            if raw is not None:
                return key, raw
        indexed = state.get(k_index(source_id, identity))
        if indexed is not None:
            other = indexed.decode()
            # A stored account with another uuid is another account (deleted + created);
            # a key written before uuids were matched as R1 says is the same one (re-keyed).
            if not (uuid and other.startswith("u:")) or account_key(other[2:], "") == key:
                raw = state.get(k_account(source_id, other))
                if raw is not None:
                    return other, raw
        return account_key(uuid, identity), None

    def _store(
        self,
        source_id: str,
        key: str,
        identity: str,
        previous: Account | None,
        policy: SourcePolicy,
        agg: AggregationInfo,
        account_obj: dict[str, object],
        digests: tuple[bytes, bytes, bytes],
        state: BatchOverlay,
    ) -> str:
        """Write the account; returns its (possibly new) state key."""
        new_key = account_key(account_obj.get("uuid") or None, identity)  # type: ignore[arg-type]
        if new_key != key:  # the account gained a uuid: re-key it (and its race window)
            state.delete(k_account(source_id, key))
            window = state.get(k_shield(source_id, key))
            if window is not None:
                state.delete(k_shield(source_id, key))
                state.put(k_shield(source_id, new_key), window)
        if previous is not None:
            old_identity = policy.identity_key(previous.nativeIdentity)
            if old_identity != identity:  # a rename: move the index entry
                state.delete(k_index(source_id, old_identity))
        stored = StoredAccount(agg.started_ms, digests[0], codec.dumps(account_obj), *digests[1:])
        state.put(k_account(source_id, new_key), stored.encode())
        state.put(k_index(source_id, identity), new_key.encode())
        return new_key

    # ----------------------------------------------------------------- completion

    def _completed(
        self, policy: SourcePolicy, record: AggregationCompleted, state: BatchOverlay
    ) -> Outcome:
        source_id, aggregation_id = record.sourceId, record.aggregationId
        meta, agg, done = self._running(source_id, aggregation_id, state)
        if agg is None:
            if done:
                return Outcome(Verdict.STALE, source_id=source_id)
            raise InputError("aggregation.completed without aggregation.started in this partition")
        self._changing(source_id)
        outcome = Outcome(
            Verdict.MARKER, source_id=source_id, completed=(record.status.value, agg.mode)
        )
        if record.status == AggregationStatus.COMPLETED:
            if agg.mode == AggregationMode.FULL:
                doomed = self._unseen(source_id, aggregation_id, agg, state)
                if agg.rejected and doomed:
                    # Some of its account records were dead-lettered: "unseen" may be "lost".
                    outcome.deletes_suppressed = len(doomed)
                    outcome.reason = "account records of this aggregation were dead-lettered"
                    doomed = []
            else:
                doomed = self._flagged(source_id, aggregation_id, state)
            if meta.baseline:
                self._delete(policy, record, doomed, state, outcome, agg.created)
            else:  # the first completed aggregation is the baseline: drop silently
                for key in doomed:
                    self._drop(policy, source_id, key, state)
                meta.baseline = True
        self._forget(source_id, aggregation_id, state)
        others = [a.started_ms for i, a in meta.running.items() if i != aggregation_id]
        self._own.expire(state, source_id, agg.started_ms, min([agg.started_ms, *others]))
        meta.finish(aggregation_id, agg.started_ms)
        return outcome

    def _seen_keys(self, source_id: str, aggregation_id: str, state: BatchOverlay) -> set[str]:
        seen = set(self._seen.get((source_id, aggregation_id), ()))
        for _, chunk in state.scan(k_seen(source_id, aggregation_id)):
            seen.update(codec.loads(chunk))
        return seen

    def _unseen(
        self, source_id: str, aggregation_id: str, agg: AggregationInfo, state: BatchOverlay
    ) -> list[str]:
        """Stored accounts a FULL aggregation did not contain (and no newer one wrote)."""
        seen = self._seen_keys(source_id, aggregation_id, state)
        prefix = k_accounts(source_id)
        doomed = []
        for raw_key, value in state.scan(prefix):
            key = raw_key[len(prefix) :].decode()
            if key not in seen and StoredAccount.as_of(value) <= agg.started_ms:
                doomed.append(key)
        return doomed

    def _flagged(self, source_id: str, aggregation_id: str, state: BatchOverlay) -> list[str]:
        prefix = k_pending_delete(source_id, aggregation_id)
        return [k[len(prefix) :].decode() for k, _ in state.scan(prefix)]

    def _delete(
        self,
        policy: SourcePolicy,
        record: AggregationCompleted,
        doomed: list[str],
        state: BatchOverlay,
        outcome: Outcome,
        created: int,
    ) -> None:
        source_id = record.sourceId
        if not doomed:
            return
        # R10: a share of the previous snapshot, so not of the accounts this one created.
        total = state.count(k_accounts(source_id)) - created
        guard = delete_guard(policy.source, total, len(doomed))
        if guard is not None:
            outcome.deletes_suppressed = len(doomed)
            outcome.guard = guard
            return
        catalog = self._registry.catalog(source_id)
        events = []
        for key in doomed:
            previous = self._drop(policy, source_id, key, state)
            if previous is None:
                continue
            event = decide_event(policy, previous, None, catalog, context=record.aggregationId)
            if event is not None:
                events.append(event)
        events.sort(key=lambda e: (e.account.nativeIdentity, e.eventType))
        outcome.events = list(events)
        if events:
            outcome.verdict = Verdict.EMITTED
            outcome.remediations = self._emitted(policy, events, source_id).remediations

    def _drop(
        self, policy: SourcePolicy, source_id: str, key: str, state: BatchOverlay
    ) -> Account | None:
        raw = state.get(k_account(source_id, key))
        if raw is None:
            return None
        previous = Account.model_validate(codec.loads(StoredAccount.decode(raw).account_json))
        state.delete(k_account(source_id, key))
        state.delete(k_shield(source_id, key))
        index = k_index(source_id, policy.identity_key(previous.nativeIdentity))
        if state.get(index) == key.encode():
            state.delete(index)
        return previous

    def _forget(self, source_id: str, aggregation_id: str, state: BatchOverlay) -> None:
        seen = self._seen.pop((source_id, aggregation_id), None)
        if seen is not None:
            self._undo.append(lambda: self._seen.__setitem__((source_id, aggregation_id), seen))
        for prefix in (
            k_seen(source_id, aggregation_id),
            k_pending_delete(source_id, aggregation_id),
        ):
            for key, _ in list(state.scan(prefix)):
                state.delete(key)
