"""The config follower: reads ``ncd.sources`` and ``ncd.entitlements`` in full, then follows."""

from __future__ import annotations

import structlog

from processor.config import Settings
from processor.errors import TransportError
from processor.transport import InRecord, PartitionReader
from processor.worker.clock import Clock
from processor.worker.decision import NOT_THE_RECORDS_FAULT, failure_reason
from processor.worker.registry import SourceRegistry

log = structlog.get_logger("processor.runner")

#: Records read per poll of the config topics (and of a changelog restore).
READ_BATCH = 5_000
#: How long one poll of a catch-up may wait for data that end offsets promise.
CATCH_UP_POLL_S = 1.0
#: The last poll of a catch-up during a batch (a record named a source not known yet): every
#: such batch waits it out, so a source whose descriptor never comes would otherwise cost
#: each batch a second (at start-up, :data:`CATCH_UP_POLL_S`).
BATCH_SETTLE_S = 0.05
#: A catch-up that makes no progress for this long fails (the broker is gone or stuck).
CATCH_UP_STALL_S = 60.0


class ConfigFollower:
    """Reads ``ncd.sources`` and ``ncd.entitlements`` in full, then follows them."""

    def __init__(
        self, reader: PartitionReader, settings: Settings, registry: SourceRegistry, clock: Clock
    ) -> None:
        self._reader = reader
        self._registry = registry
        self._clock = clock
        self._sources = settings.topic_sources
        self._entitlements = settings.topic_entitlements
        tps = reader.partitions_for(self._sources) + reader.partitions_for(self._entitlements)
        self._tps = tps
        reader.assign(dict.fromkeys(tps))
        self.rejected = 0

    def follow(self, timeout_s: float = 0.0) -> int:
        """Apply whatever arrived; returns the number of records applied."""
        records = self._reader.poll(timeout_s, READ_BATCH)
        for record in records:
            self._apply(record)
        return len(records)

    def catch_up(self, settle_s: float = CATCH_UP_POLL_S) -> None:
        """Read both topics up to their current end offsets, then until a poll of up to
        ``settle_s`` brings nothing."""
        ends = self._reader.end_offsets(self._tps)
        deadline = self._clock.monotonic() + CATCH_UP_STALL_S
        while any(self._reader.position(tp) < end for tp, end in ends.items()):
            if self.follow(CATCH_UP_POLL_S):
                deadline = self._clock.monotonic() + CATCH_UP_STALL_S
            elif self._clock.monotonic() > deadline:
                raise TransportError("config topics stopped advancing", retriable=True)
        # Tansu 0.6.0 under-reports end offsets of topics written by a plain producer
        # (docs/decisions.md), so take whatever one more short poll brings.
        while self.follow(settle_s):
            pass

    def _apply(self, record: InRecord) -> None:
        """Apply one config record; one that fails in any way is logged and skipped."""
        try:
            if record.topic == self._sources:
                self._registry.apply_source(record.key, record.value)
            else:
                self._registry.apply_entitlement(record.key, record.value)
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception as exc:  # no single record can stop the worker (see decision.py)
            self.rejected += 1
            log.warning(
                "config_record_rejected",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reason=failure_reason(exc),
            )

    def close(self) -> None:
        self._reader.close()
