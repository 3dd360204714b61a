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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import TypeAdapter, ValidationError

from processor import codec
from processor.core import (
    SourcePolicy,
    apply_provisioning,
    decide_event,
    deletes_allowed,
    is_completed,
)
from processor.errors import InputError
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
)
from processor.state.overlay import BatchOverlay
from processor.worker.registry import SourceRegistry
from processor.worker.state import (
    AggregationInfo,
    SourceMeta,
    StoredAccount,
    account_key,
    digest,
    k_account,
    k_accounts,
    k_index,
    k_meta,
    k_pending_delete,
    k_seen,
)

_RECORD = TypeAdapter[AggregationStarted | AccountRecord | AggregationCompleted](AggregationRecord)


UNKNOWN_SOURCE = "unknown source"


class Verdict(StrEnum):
    """What became of one input record."""

    EMITTED = "emitted"  # one or more events
    UNCHANGED = "unchanged"  # same as the stored state: nothing written
    STORED = "stored"  # state updated, nothing to report (baseline, or unmonitored change)
    MARKER = "marker"  # an aggregation.started / completed marker
    STALE = "stale"  # from an aggregation older than the stored state: ignored
    APPLIED = "applied"  # a provisioning record applied to the stored baseline (R15)
    IGNORED = "ignored"  # a provisioning record with nothing to apply it to (yet)
    DEAD_LETTERED = "dead_lettered"


@dataclass(slots=True)
class Outcome:
    verdict: Verdict
    events: list[AccountEvent] = field(default_factory=list)
    reason: str | None = None
    source_id: str | None = None
    #: Set on a completion whose deletions the delete guard suppressed: how many.
    deletes_suppressed: int = 0
    #: Set on a completion: the aggregation's status and mode.
    completed: tuple[str, str] | None = None


def _dead(reason: str, source_id: str | None = None) -> Outcome:
    return Outcome(Verdict.DEAD_LETTERED, reason=reason, source_id=source_id)


def parse_instant_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 instant ("Z" accepted)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InputError("startedAt is not an RFC 3339 instant") from exc
    if moment.tzinfo is None:
        raise InputError("startedAt has no time zone offset")
    return int(moment.timestamp() * 1000)


class PartitionProcessor:
    """Decides the records of one input partition against its state."""

    def __init__(self, registry: SourceRegistry) -> None:
        self._registry = registry
        self._meta: dict[str, SourceMeta] = {}
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._dirty_meta: set[str] = set()

    # ----------------------------------------------------------------- batch bracket

    def begin_batch(self) -> None:
        """Forget anything cached from an aborted batch."""
        self._meta.clear()
        self._seen.clear()
        self._dirty_meta.clear()

    def end_batch(self, state: BatchOverlay, batch_id: int) -> None:
        """Write the batch's seen-account chunks and changed metadata into ``state``."""
        for (source_id, aggregation_id), keys in self._seen.items():
            if keys:
                state.put(k_seen(source_id, aggregation_id, batch_id), codec.dumps(sorted(keys)))
        for source_id in self._dirty_meta:
            state.put(k_meta(source_id), self._meta[source_id].encode())
        self.begin_batch()

    # ----------------------------------------------------------------- records

    def process(self, value: bytes | None, state: BatchOverlay) -> Outcome:
        """Decide one aggregation record."""
        if value is None:
            return _dead("tombstone on the aggregations topic")
        try:
            record = _RECORD.validate_python(codec.loads(value))
        except InputError as exc:
            return _dead(exc.reason)
        except ValidationError as exc:
            return _dead(codec.describe_validation_error(exc, "aggregation record"))
        policy = self._registry.policy(record.sourceId)
        if policy is None:
            return _dead(UNKNOWN_SOURCE, record.sourceId)
        try:
            if isinstance(record, AggregationStarted):
                return self._started(record, state)
            if isinstance(record, AccountRecord):
                return self._account(policy, record, state)
            return self._completed(policy, record, state)
        except InputError as exc:
            return _dead(exc.reason, record.sourceId)

    def process_provisioning(self, value: bytes | None, state: BatchOverlay) -> Outcome:
        """Apply one completed provisioning record to the stored baseline (R15).

        The platform's own change is written into the account's stored state, so the next
        aggregation that shows it finds nothing to report. The stored ``asOf`` is kept:
        provisioning does not make the state newer than an aggregation.
        """
        if value is None:
            return _dead("tombstone on the provisioning topic")
        try:
            record = codec.validate(ProvisioningRecord, codec.loads(value), "provisioning record")
        except InputError as exc:
            return _dead(exc.reason)
        policy = self._registry.policy(record.sourceId)
        if policy is None:
            return _dead(UNKNOWN_SOURCE, record.sourceId)
        target = record.target()
        if target is None:
            return _dead("provisioning record names no account", record.sourceId)
        if not is_completed(record):
            return Outcome(Verdict.IGNORED, source_id=record.sourceId)
        source_id = record.sourceId
        identity = policy.identity_key(target)
        indexed = state.get(k_index(source_id, identity))
        raw = None if indexed is None else state.get(k_account(source_id, indexed.decode()))
        if indexed is None or raw is None:
            return Outcome(Verdict.IGNORED, source_id=source_id)
        stored = StoredAccount.decode(raw)
        previous = Account.model_validate(codec.loads(stored.account_json))
        updated = apply_provisioning(policy, previous, record)
        account_obj = updated.model_dump(mode="json", exclude_none=True)
        new = StoredAccount(stored.as_of_ms, digest(account_obj), codec.dumps(account_obj))
        state.put(k_account(source_id, indexed.decode()), new.encode())
        return Outcome(Verdict.APPLIED, source_id=source_id)

    def _meta_of(self, source_id: str, state: BatchOverlay) -> SourceMeta:
        meta = self._meta.get(source_id)
        if meta is None:
            raw = state.get(k_meta(source_id))
            meta = SourceMeta() if raw is None else SourceMeta.decode(raw)
            self._meta[source_id] = meta
        return meta

    def _started(self, record: AggregationStarted, state: BatchOverlay) -> Outcome:
        started = parse_instant_ms(record.startedAt)
        meta = self._meta_of(record.sourceId, state)
        if record.aggregationId in meta.done:
            return Outcome(Verdict.STALE, source_id=record.sourceId)
        meta.running[record.aggregationId] = AggregationInfo(started, record.mode.value)
        self._dirty_meta.add(record.sourceId)
        return Outcome(Verdict.MARKER, source_id=record.sourceId)

    def _running(
        self, source_id: str, aggregation_id: str, state: BatchOverlay
    ) -> tuple[SourceMeta, AggregationInfo | None, bool]:
        """(meta, the running aggregation or None, whether it is a completed one)."""
        meta = self._meta_of(source_id, state)
        return meta, meta.running.get(aggregation_id), aggregation_id in meta.done

    def _account(self, policy: SourcePolicy, record: AccountRecord, state: BatchOverlay) -> Outcome:
        source_id = record.sourceId
        meta, agg, done = self._running(source_id, record.aggregationId, state)
        if agg is None:
            if done:
                return Outcome(Verdict.STALE, source_id=source_id)
            raise InputError("no aggregation.started for this aggregation in this partition")
        current = record.account
        identity = policy.identity_key(current.nativeIdentity)
        key, stored_raw = self._lookup(source_id, current.uuid, identity, state)
        self._seen.setdefault((source_id, record.aggregationId), set()).add(key)
        if record.deleted:
            if agg.mode != AggregationMode.DELTA:
                raise InputError("deleted: true is only allowed in DELTA aggregations")
            if stored_raw is not None:
                state.put(k_pending_delete(source_id, record.aggregationId, key), b"")
            return Outcome(Verdict.STORED, source_id=source_id)
        account_obj = current.model_dump(mode="json", exclude_none=True)
        new_digest = digest(account_obj)
        previous: Account | None = None
        if stored_raw is not None:
            stored = StoredAccount.decode(stored_raw)
            if stored.as_of_ms > agg.started_ms:
                return Outcome(Verdict.STALE, source_id=source_id)
            if stored.digest == new_digest:
                return Outcome(Verdict.UNCHANGED, source_id=source_id)
            previous = Account.model_validate(codec.loads(stored.account_json))
        self._store(source_id, key, identity, previous, policy, agg, account_obj, new_digest, state)
        if not meta.baseline:
            return Outcome(Verdict.STORED, source_id=source_id)
        event = decide_event(
            policy,
            previous,
            current,
            self._registry.catalog(source_id),
            context=record.aggregationId,
        )
        if event is None:
            return Outcome(Verdict.STORED, source_id=source_id)
        return Outcome(Verdict.EMITTED, events=[event], source_id=source_id)

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
            # A stored account with another uuid is another account (deleted + created).
            if not (uuid and other.startswith("u:")):
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
        new_digest: bytes,
        state: BatchOverlay,
    ) -> None:
        new_key = account_key(account_obj.get("uuid") or None, identity)  # type: ignore[arg-type]
        if new_key != key:  # the account gained a uuid: re-key it
            state.delete(k_account(source_id, key))
        if previous is not None:
            old_identity = policy.identity_key(previous.nativeIdentity)
            if old_identity != identity:  # a rename: move the index entry
                state.delete(k_index(source_id, old_identity))
        stored = StoredAccount(agg.started_ms, new_digest, codec.dumps(account_obj))
        state.put(k_account(source_id, new_key), stored.encode())
        state.put(k_index(source_id, identity), new_key.encode())

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
        outcome = Outcome(
            Verdict.MARKER, source_id=source_id, completed=(record.status.value, agg.mode)
        )
        if record.status == AggregationStatus.COMPLETED:
            if agg.mode == AggregationMode.FULL:
                doomed = self._unseen(source_id, aggregation_id, agg, state)
            else:
                doomed = self._flagged(source_id, aggregation_id, state)
            if meta.baseline:
                self._delete(policy, record, doomed, state, outcome)
            else:  # the first completed aggregation is the baseline: drop silently
                for key in doomed:
                    self._drop(policy, source_id, key, state)
                meta.baseline = True
        self._forget(source_id, aggregation_id, state)
        meta.finish(aggregation_id, agg.started_ms)
        self._dirty_meta.add(source_id)
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
    ) -> None:
        source_id = record.sourceId
        if not doomed:
            return
        total = state.count(k_accounts(source_id))
        if not deletes_allowed(total, len(doomed), policy.source.deleteThreshold):
            outcome.deletes_suppressed = len(doomed)
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

    def _drop(
        self, policy: SourcePolicy, source_id: str, key: str, state: BatchOverlay
    ) -> Account | None:
        raw = state.get(k_account(source_id, key))
        if raw is None:
            return None
        previous = Account.model_validate(codec.loads(StoredAccount.decode(raw).account_json))
        state.delete(k_account(source_id, key))
        index = k_index(source_id, policy.identity_key(previous.nativeIdentity))
        if state.get(index) == key.encode():
            state.delete(index)
        return previous

    def _forget(self, source_id: str, aggregation_id: str, state: BatchOverlay) -> None:
        self._seen.pop((source_id, aggregation_id), None)
        for prefix in (
            k_seen(source_id, aggregation_id),
            k_pending_delete(source_id, aggregation_id),
        ):
            for key, _ in list(state.scan(prefix)):
                state.delete(key)
