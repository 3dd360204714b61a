"""An in-process worker on the in-memory transport, run on the test's own thread.

``MemoryWorker.run`` calls ``Runner.run`` with a stop "event" that is a condition: it is
checked at the top of every loop iteration, so a test runs the loop exactly until the group
has committed every input record, with no threads and no waiting on a clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processor.config import Settings
from processor.models import Account, SourceDescriptor
from processor.publisher import Publisher, Topics
from processor.runner import Runner
from processor.state.store import InMemoryStateStore, InMemoryStoreFactory
from processor.topics import ensure_topics
from processor.transport import TP, OutRecord
from processor.transport.memory import MemoryBroker

#: A loop that has not drained after this many iterations is stuck (the test fails).
MAX_ITERATIONS = 10_000


class StopWhen(threading.Event):
    """A stop event whose ``is_set`` asks ``done()``; ``on_check`` sees every check."""

    def __init__(self, done: Callable[[], bool], on_check: Callable[[], None] = lambda: None):
        super().__init__()
        self._done = done
        self._on_check = on_check
        self.checks = 0

    def is_set(self) -> bool:
        self.checks += 1
        if self.checks > MAX_ITERATIONS:
            raise AssertionError("the worker loop did not drain its input")
        self._on_check()
        return self._done()


class HookedStore(InMemoryStateStore):
    """An in-memory store that calls ``before_apply(writes)`` before each ``apply``."""

    def __init__(self, inner: InMemoryStateStore, before_apply: Callable[[int], None]) -> None:
        super().__init__(inner._table)
        self._before = before_apply

    def apply(self, writes: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        self._before(len(writes))
        super().apply(writes, checkpoint)


class HookedFactory(InMemoryStoreFactory):
    """Stores that report every ``apply`` to ``before_apply``."""

    def __init__(self, before_apply: Callable[[int], None]) -> None:
        super().__init__()
        self.before_apply = before_apply

    def open(self, partition: int) -> InMemoryStateStore:
        store = HookedStore(super().open(partition), self.before_apply)
        self._open[partition] = store
        return store


@dataclass
class MemoryWorker:
    """A memory broker, settings naming one partition per topic, and runners over them."""

    tmp_path: Path
    broker: MemoryBroker = field(default_factory=MemoryBroker)
    max_batch_records: int = 500
    clock: Callable[[], str] | None = None

    @property
    def settings(self) -> Settings:
        return Settings(
            bootstrap_servers="memory:9092",
            state_dir=self.tmp_path / "state",
            instance_id="unit",
            partitions=1,
            max_batch_records=self.max_batch_records,
            http_port=0,
        )

    def runner(self, stores: InMemoryStoreFactory | None = None) -> Runner:
        return Runner(self.settings, self.broker, stores or InMemoryStoreFactory())

    def ensure_topics(self) -> int:
        """Create the missing topics like the worker does; the aggregations partition count."""
        return ensure_topics(self.broker.admin(), self.settings)

    def publisher(self) -> Publisher:
        s = self.settings
        partitions = self.ensure_topics()
        topics = Topics(
            s.topic_sources, s.topic_entitlements, s.topic_aggregations, s.topic_provisioning
        )
        return Publisher(self.broker.producer(), partitions, topics)

    def publish(self, source: SourceDescriptor, accounts: Iterable[Account], **kwargs: Any) -> str:
        publisher = self.publisher()
        publisher.publish_source(source)
        return publisher.publish_aggregation(source.id, list(accounts), **kwargs)

    def produce_raw(self, key: bytes | None, value: bytes | None) -> None:
        """One record on the aggregations topic, as is."""
        self.ensure_topics()
        self.broker.producer().send(OutRecord(self.settings.topic_aggregations, key, value))

    def drained(self) -> bool:
        """Whether the group committed every record of both input topics."""
        s = self.settings
        for topic in (s.topic_aggregations, s.topic_provisioning):
            for p in range(len(self.broker.logs.get(topic, []))):
                tp = TP(topic, p)
                end = self.broker.end_offset(tp)
                if self.broker.group_offsets.get((s.group_id, tp), 0) < end:
                    return False
        return True

    def run(self, runner: Runner, on_check: Callable[[], None] = lambda: None) -> StopWhen:
        """Run ``runner`` until it is ready and every input record is committed.

        ``on_check`` is called at the top of every iteration of the loop.
        """
        stop = StopWhen(lambda: runner.ready.is_set() and self.drained(), on_check)
        runner.run(stop)
        return stop
