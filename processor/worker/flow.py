"""What the units that decide a partition's records share."""

from __future__ import annotations

from processor.worker.batch_memory import BatchMemory
from processor.worker.own_changes import OwnChanges
from processor.worker.registry import SourceRegistry


class Flow:
    """A decision unit of one partition: the sources it knows (descriptors and catalogs),
    the batch's memory and the state operations for the platform's own changes."""

    def __init__(self, registry: SourceRegistry, memory: BatchMemory, own: OwnChanges) -> None:
        self._registry = registry
        self._memory = memory
        self._own = own
