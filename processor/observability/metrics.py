"""The worker's Prometheus metrics, on a registry of their own.

Each :class:`Metrics` owns a ``CollectorRegistry`` instead of using the process-wide default,
so several runners (tests, the embedded demo) can live in one process without "duplicated
timeseries" errors, and the ``/metrics`` endpoint shows only the worker's series.

Labels carry only verdicts, event types and partition numbers: never an account, a source's
attribute or a payload (the same rule as the logs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from processor.transport import TP

#: Content type of :meth:`Metrics.render`.
CONTENT_TYPE = CONTENT_TYPE_LATEST

# A batch takes from about a millisecond (a few unchanged records) to tens of seconds
# (a full batch with a slow transactional commit).
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Every metric of the worker; the runner updates them once a batch has committed."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        verdicts: Iterable[str] = (),
        event_types: Iterable[str] = (),
    ) -> None:
        """``verdicts`` and ``event_types`` are shown at 0 from the start (not only once seen)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "ncd_records", "Input records decided, by verdict", ["verdict"], registry=r
        )
        self.events = Counter("ncd_events", "NCD events published, by type", ["type"], registry=r)
        self.dead_letters = Counter(
            "ncd_dead_letters", "Input records sent to the dead-letter topic", registry=r
        )
        self.delete_guard_trips = Counter(
            "ncd_delete_guard_trips",
            "Completed aggregations whose deletions the delete guard suppressed",
            registry=r,
        )
        self.stale_records = Counter(
            "ncd_stale_records", "Records older than the stored state, ignored", registry=r
        )
        self.remediations = Counter(
            "ncd_remediations", "Remediation commands published", registry=r
        )
        self.consumer_lag = Gauge(
            "ncd_consumer_lag",
            "Input records behind the high watermark, per partition (both input topics)",
            ["partition"],
            registry=r,
        )
        self.batch_duration = Histogram(
            "ncd_batch_duration_seconds",
            "Time from a batch's first decision to its commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.state_keys = Gauge(
            "ncd_state_keys",
            "Keys in the local state store, per partition, as of its last batch written to disk"
            " (read when scraped; a batch being written is counted once it is)",
            ["partition"],
            registry=r,
        )
        self.restore_records = Counter(
            "ncd_restore_records", "Changelog records applied while restoring state", registry=r
        )
        self.restore_remaining = Gauge(
            "ncd_restore_remaining",
            "Changelog offsets still to restore, per partition",
            ["partition"],
            registry=r,
        )
        self.restoring_partitions = Gauge(
            "ncd_restoring_partitions",
            "Assigned input partitions whose state is not restored yet (paused meanwhile)",
            registry=r,
        )
        self.ready = Gauge(
            "ncd_ready", "1 when the worker is ready (restored and polling)", registry=r
        )
        for verdict in verdicts:
            self.records.labels(verdict=verdict)
        for event_type in event_types:
            self.events.labels(type=event_type)

    def track_ready(self, is_ready: Callable[[], bool]) -> None:
        """Make ``ncd_ready`` read ``is_ready()`` at every scrape."""
        self.ready.set_function(lambda: 1.0 if is_ready() else 0.0)

    def track_restoring(self, count: Callable[[], int]) -> None:
        """Make ``ncd_restoring_partitions`` read ``count()`` at every scrape."""
        self.restoring_partitions.set_function(lambda: float(count()))

    def batch(
        self,
        verdicts: Mapping[str, int],
        events: Mapping[str, int],
        *,
        guard_trips: int,
        remediations: int,
        duration_s: float,
    ) -> None:
        """Count one committed batch."""
        for verdict, n in verdicts.items():
            self.records.labels(verdict=verdict).inc(n)
        for event_type, n in events.items():
            self.events.labels(type=event_type).inc(n)
        self.dead_letters.inc(verdicts.get("dead_lettered", 0))
        self.stale_records.inc(verdicts.get("stale", 0))
        self.delete_guard_trips.inc(guard_trips)
        self.remediations.inc(remediations)
        self.batch_duration.observe(duration_s)

    def lag(self, lag: Mapping[TP, int]) -> None:
        """Set ``ncd_consumer_lag`` from the consumer's records-behind per partition.

        Both input topics share partition numbers (co-partitioning), so their lags add up.
        """
        per_partition: dict[int, int] = {}
        for (_topic, partition), behind in lag.items():
            per_partition[partition] = per_partition.get(partition, 0) + max(behind, 0)
        for partition, behind in per_partition.items():
            self.consumer_lag.labels(partition=str(partition)).set(behind)

    def state_size(self, partition: int, keys: Callable[[], float]) -> None:
        """Count a partition's store keys with ``keys`` whenever scraped (from the scraping
        thread: ``keys`` must be safe there)."""
        self.state_keys.labels(partition=str(partition)).set_function(keys)

    def restoring(self, partition: int, applied: int, remaining: int) -> None:
        """Count ``applied`` restored records; ``remaining`` offsets are left."""
        self.restore_records.inc(applied)
        self.restore_remaining.labels(partition=str(partition)).set(remaining)

    def forget_partition(self, partition: int) -> None:
        """Drop the per-partition series of a partition this worker no longer holds."""
        label = str(partition)
        for gauge in (self.consumer_lag, self.state_keys, self.restore_remaining):
            with contextlib.suppress(KeyError):  # never set for this partition
                gauge.remove(label)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
