"""An aggregation's markers: ``aggregation.started`` registers it, ``aggregation.completed``
ends it and sweeps the accounts it deleted.

COMPLETED FULL deletes the baseline's accounts it did not see (unless some of its account
records were dead-lettered: "unseen" may then be "lost"), COMPLETED DELTA those flagged
``deleted: true``; both under the delete guard (R10). The first completed aggregation is
the baseline: its deletions are dropped silently. FAILED and TERMINATED delete nothing.
"""

from __future__ import annotations

from itertools import filterfalse
from operator import itemgetter

from processor.core import SourcePolicy, decide_event, delete_guard
from processor.errors import InputError
from processor.models import (
    AggregationCompleted,
    AggregationMode,
    AggregationStarted,
    AggregationStatus,
    epoch_ms,
)
from processor.state.overlay import BatchOverlay
from processor.worker import accounts
from processor.worker.flow import Flow
from processor.worker.outcome import Outcome, Verdict, commands
from processor.worker.state import (
    AggregationInfo,
    StoredAccount,
    k_accounts,
    k_pending_delete,
)


class AggregationLifecycle(Flow):
    """Starts and completes the aggregations of one partition."""

    def started(self, record: AggregationStarted, state: BatchOverlay) -> Outcome:
        """Register a running aggregation (its start and mode)."""
        memory = self._memory
        started = memory.not_future(epoch_ms(record.startedAt), "startedAt")
        source_id = record.sourceId
        meta = memory.meta_of(source_id, state)
        if record.aggregationId in meta.done:
            return Outcome(Verdict.STALE, source_id=source_id)
        info = AggregationInfo(started, record.mode.value)
        memory.changing(source_id).running[record.aggregationId] = info
        for dropped in meta.overdue():  # bounded: a flood of markers cannot grow the metadata
            if dropped == record.aggregationId:
                raise InputError("older than every running aggregation of its source, at the cap")
            del meta.running[dropped]
            memory.forget(source_id, dropped, state)
        return Outcome(Verdict.MARKER, source_id=record.sourceId)

    def completed(
        self, policy: SourcePolicy, record: AggregationCompleted, state: BatchOverlay
    ) -> Outcome:
        """End a running aggregation: sweep its deletions, settle the platform's changes."""
        source_id, aggregation_id = record.sourceId, record.aggregationId
        meta, agg, done = self._memory.running(source_id, aggregation_id, state)
        if agg is None:
            if done:
                return Outcome(Verdict.STALE, source_id=source_id)
            raise InputError("aggregation.completed without aggregation.started in this partition")
        self._memory.changing(source_id)
        outcome = Outcome(
            Verdict.MARKER, source_id=source_id, completed=(record.status.value, agg.mode)
        )
        if record.status == AggregationStatus.COMPLETED:
            doomed, total = self._doomed(record, agg, outcome, state)
            if meta.baseline:
                self._delete(policy, record, doomed, state, outcome, total - agg.created)
            else:  # the first completed aggregation is the baseline: drop silently
                for key in doomed:
                    accounts.drop(policy, source_id, key, state)
                meta.baseline = True
        self._memory.forget(source_id, aggregation_id, state)
        others = [a.started_ms for i, a in meta.running.items() if i != aggregation_id]
        self._own.expire(state, source_id, agg.started_ms, min([agg.started_ms, *others]))
        meta.finish(aggregation_id, agg.started_ms)
        return outcome

    def _doomed(
        self,
        record: AggregationCompleted,
        agg: AggregationInfo,
        outcome: Outcome,
        state: BatchOverlay,
    ) -> tuple[list[str], int]:
        """The state keys a COMPLETED aggregation deletes (FULL: unseen; DELTA: flagged), and
        how many accounts the source has in ``state``."""
        source_id, aggregation_id = record.sourceId, record.aggregationId
        if agg.mode != AggregationMode.FULL:
            prefix = k_pending_delete(source_id, aggregation_id)
            flagged = [k[len(prefix) :].decode() for k in state.keys(prefix)]
            return flagged, (state.count(k_accounts(source_id)) if flagged else 0)
        doomed, total = self._unseen(source_id, aggregation_id, agg, state)
        if agg.rejected and doomed:
            # Some of its account records were dead-lettered: "unseen" may be "lost".
            outcome.deletes_suppressed = len(doomed)
            outcome.reason = "account records of this aggregation were dead-lettered"
            return [], total
        return doomed, total

    def _unseen(
        self, source_id: str, aggregation_id: str, agg: AggregationInfo, state: BatchOverlay
    ) -> tuple[list[str], int]:
        """Stored accounts a FULL aggregation did not contain (and no newer one wrote), and
        how many accounts the source has.

        It walks the keys alone: only an unseen account's value is read (its checksum
        checked, as every read does) for its ``asOf``; a seen one's is never needed.
        """
        seen = self._memory.seen_keys(source_id, aggregation_id, state)
        prefix = k_accounts(source_id)
        # (map and itemgetter: no Python frame per key; there may be millions)
        stored = list(
            map(bytes.decode, map(itemgetter(slice(len(prefix), None)), state.keys(prefix)))
        )
        doomed = []
        for key in filterfalse(seen.__contains__, stored):  # (no Python step per seen key)
            value = state.get(prefix + key.encode())
            if value is not None and StoredAccount.as_of(value) <= agg.started_ms:
                doomed.append(key)
        return doomed, len(stored)

    def _delete(
        self,
        policy: SourcePolicy,
        record: AggregationCompleted,
        doomed: list[str],
        state: BatchOverlay,
        outcome: Outcome,
        total: int,
    ) -> None:
        """Delete ``doomed`` with their events, unless the delete guard (R10) holds them;
        ``total`` is the size of the previous snapshot (R10: the source's accounts less
        those this aggregation created)."""
        source_id = record.sourceId
        if not doomed:
            return
        guard = delete_guard(policy.source, total, len(doomed))
        if guard is not None:
            outcome.deletes_suppressed = len(doomed)
            outcome.guard = guard
            return
        catalog = self._registry.catalog(source_id)
        events = []
        for key in doomed:
            previous = accounts.drop(policy, source_id, key, state)
            if previous is None:
                continue
            event = decide_event(policy, previous, None, catalog, context=record.aggregationId)
            if event is not None:
                events.append(event)
        events.sort(key=lambda e: (e.native_identity, e.operation))
        outcome.events = list(events)
        if events:
            outcome.verdict = Verdict.EMITTED
            outcome.remediations = commands(policy, events)
