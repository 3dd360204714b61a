"""The aggregation lifecycle of one input partition (docs/records.md, "Aggregation records").

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
returns to it (:func:`~processor.worker.decision.decide_record`, the per-record path the
worker and ``replay`` share, calls it for any failure of the record, its outputs included),
so the record is dead-lettered with its reason and the next one is decided as if it never
came.

This module reads a record and hands it to the unit that decides it:
:mod:`~processor.worker.account_flow` (account records),
:mod:`~processor.worker.lifecycle` (the markers, and the deletions at completion) and
:mod:`~processor.worker.provisioning_flow` (provisioning records), which share the batch's
memory (:mod:`~processor.worker.batch_memory`) and the stored accounts
(:mod:`~processor.worker.accounts`).

Provisioning records (``ncd.provisioning``, the platform's own changes; docs/provisioning.md)
are applied to the stored account (R15), held until an unknown account appears, kept while
PENDING, withdrawn when FAILED, and a ``notFound`` answer deletes the account at once; the
state this needs is handled by :class:`~processor.worker.own_changes.OwnChanges`. For each
native event of a source that asks for remediation, the outcome carries the command that
reverts it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from processor import codec
from processor.errors import InputError
from processor.keys import account_record_key
from processor.models import (
    AccountRecord,
    AggregationCompleted,
    AggregationRecord,
    AggregationStarted,
)
from processor.state.overlay import BatchOverlay
from processor.worker.account_flow import AccountFlow, Given
from processor.worker.accounts import NO_INPUTS, Looked
from processor.worker.batch_memory import BatchMemory
from processor.worker.envelope import account_bytes, account_digest, compact_account
from processor.worker.lifecycle import AggregationLifecycle
from processor.worker.outcome import UNKNOWN_SOURCE, Outcome, Verdict, dead
from processor.worker.own_changes import OwnChanges
from processor.worker.provisioning_flow import ProvisioningFlow
from processor.worker.registry import SourceRegistry
from processor.worker.state import NO_INPUT_DIGEST, canonical_digest
from processor.worker.unchanged import InputRecord, Run, UnchangedRuns

__all__ = ["DEFAULT_HOLD_S", "UNKNOWN_SOURCE", "Outcome", "PartitionProcessor", "Verdict"]

_RECORD = TypeAdapter[AggregationStarted | AccountRecord | AggregationCompleted](AggregationRecord)

#: Default bound on how long provisioning records wait for their account (or, PENDING, for
#: the aggregation that shows them): an hour covers a slow aggregation of a large source.
DEFAULT_HOLD_S = 3600.0


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
        own = OwnChanges(int(hold_s * 1000))
        self._memory = BatchMemory(max_record_bytes)
        self._accounts = AccountFlow(registry, self._memory, own)
        self._lifecycle = AggregationLifecycle(registry, self._memory, own)
        self._provisioning = ProvisioningFlow(registry, self._memory, own)
        self._unchanged = UnchangedRuns(registry, self._memory, own)
        #: The record being decided and its JSON, once decoded: ``abandon`` reads it again
        #: only for a record it does not hold.
        self._decoded: tuple[bytes, Any] | None = None

    # ----------------------------------------------------------------- batch bracket

    def begin_batch(self, latest_ms: int | None = None) -> None:
        """Forget anything cached from an aborted batch.

        ``latest_ms``: instants (``startedAt``, ``completedAt``) after it are dead-lettered;
        the runner passes its clock plus ``NCD_FUTURE_ALLOWANCE_S`` (``None``: no bound).
        """
        self._memory.begin(latest_ms)
        self._unchanged.looked = None

    def end_batch(self, state: BatchOverlay, batch_id: int) -> None:
        """Write the batch's seen-account chunks and changed metadata into ``state``."""
        self._memory.end(state, batch_id)

    def abandon(self, value: bytes | None, state: BatchOverlay, reason: str) -> Outcome:
        """Undo everything the record being decided did, and dead-letter it with ``reason``.

        The record still counts as rejected against its running aggregation (a FULL
        aggregation that lost records deletes nothing), when it names one.
        """
        self._memory.rollback(state)
        obj = None
        decoded, self._decoded = self._decoded, None
        if decoded is not None and decoded[0] is value:
            obj = decoded[1]
        elif value is not None:
            with contextlib.suppress(InputError):
                obj = codec.loads(value)
        source_id = obj.get("sourceId") if isinstance(obj, dict) else None
        if not isinstance(source_id, str) or self._registry.policy(source_id) is None:
            return dead(reason)
        # A key this record names may not even be valid: then it names no aggregation.
        with contextlib.suppress(InputError, TypeError, ValueError):
            self._reject(obj, state)
        return dead(reason, source_id)

    # ----------------------------------------------------------------- records

    def unchanged_run(
        self, records: Sequence[InputRecord], start: int, topic: str, state: BatchOverlay
    ) -> Run | None:
        """The run of unchanged account records of ``topic`` (``ncd.aggregations``) from
        ``records[start]`` on, decided in bulk from their bytes
        (:mod:`~processor.worker.unchanged`; what :meth:`process` would decide, with nothing
        to send and nothing to undo). ``None``, or a run of none: :meth:`process` decides
        ``records[start]`` (a run of none hands what it found of it on to that decision)."""
        return self._unchanged.run(records, start, topic, state, self._max_record_bytes)

    def process(self, value: bytes | None, state: BatchOverlay) -> Outcome:
        """Decide one aggregation record."""
        # What a run of none found of this very record (its compact way, done already): this
        # decision's own reads.
        handed, self._unchanged.looked = self._unchanged.looked, None
        self._decoded = None
        self._accounts.new_record()
        self._memory.savepoint(state)
        if value is None:
            return dead("tombstone on the aggregations topic")
        looked = handed if handed is not None and handed.value is value else None
        # The quickest byte path first, here: most records of an aggregation end with it.
        if looked is None and (
            self._max_record_bytes is None or len(value) <= self._max_record_bytes
        ):
            seen = compact_account(value)
            if seen is not None:
                fast = self._accounts.unchanged_compact(seen, value, state)
                if isinstance(fast, Outcome):
                    return fast
                looked = fast
        try:
            return self._aggregation_record(value, state, looked)
        except InputError as exc:
            return self.abandon(value, state, exc.reason)

    def process_provisioning(self, value: bytes | None, state: BatchOverlay) -> Outcome:
        """Decide one provisioning record (R15; :mod:`~processor.worker.provisioning_flow`)."""
        self._decoded = None
        self._memory.savepoint(state)
        if value is None:
            return dead("tombstone on the provisioning topic")
        if (too_big := self._too_big(value)) is not None:
            return too_big
        try:
            return self._provisioning.decide(value, state)
        except InputError as exc:
            return self.abandon(value, state, exc.reason)

    def _aggregation_record(
        self, value: bytes, state: BatchOverlay, looked: Looked | None
    ) -> Outcome:
        """Decide an aggregation record; ``looked``: what the compact way found of it (no
        write since), which the later paths use rather than read or hash again."""
        bytes_digest = NO_INPUT_DIGEST
        if self._max_record_bytes is None or len(value) <= self._max_record_bytes:
            seen_bytes = account_bytes(value)
            if seen_bytes is not None:
                known = None if looked is None else (looked.start, looked.stop, looked.digest)
                bytes_digest = account_digest(seen_bytes, value, known)
                fast = self._accounts.unchanged_bytes(seen_bytes, bytes_digest, state, looked)
                if fast is not None:
                    return fast
        obj = codec.loads(value)
        self._decoded = (value, obj)
        if (too_big := self._too_big(value)) is not None:
            self._reject(obj, state)
            return too_big
        inputs, given = NO_INPUTS, None
        if isinstance(obj, dict) and obj.get("type") == "account":
            account = obj.get("account")
            if isinstance(account, dict):
                canonical = codec.dumps_canonical(account)  # state.digest(account), kept
                given = Given(canonical, account)
                inputs = (canonical_digest(canonical), bytes_digest)
                fast = self._accounts.unchanged_input(obj, account, inputs, state, looked)
                if fast is not None:
                    return fast
        try:
            record = _RECORD.validate_python(obj)
        except ValidationError as exc:
            raise InputError(codec.describe_validation_error(exc, "aggregation record")) from exc
        policy = self._registry.policy(record.sourceId)
        if policy is None:
            return dead(UNKNOWN_SOURCE, record.sourceId)
        if isinstance(record, AggregationStarted):
            return self._lifecycle.started(record, state)
        if isinstance(record, AccountRecord):
            outcome = self._accounts.decide(policy, record, state, inputs, looked, given)
            outcome.record_key = account_record_key(record.sourceId, record.account)
            return outcome
        return self._lifecycle.completed(policy, record, state)

    def _reject(self, obj: Any, state: BatchOverlay) -> None:
        """Count a dead-lettered account record against its running aggregation, if known."""
        if not isinstance(obj, dict) or obj.get("type") != "account":
            return
        source_id, aggregation_id = obj.get("sourceId"), obj.get("aggregationId")
        if not isinstance(source_id, str) or not isinstance(aggregation_id, str):
            return
        if self._registry.policy(source_id) is None:
            return
        if aggregation_id in self._memory.meta_of(source_id, state).running:
            self._memory.changing(source_id).running[aggregation_id].rejected += 1

    def _too_big(self, value: bytes) -> Outcome | None:
        """The dead-letter outcome of a record over the size limit, else ``None``."""
        if self._max_record_bytes is None or len(value) <= self._max_record_bytes:
            return None
        return dead(f"record of {len(value)} bytes is over the limit (NCD_MAX_RECORD_BYTES)")
