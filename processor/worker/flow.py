"""What the units that decide a partition's records share."""

from __future__ import annotations

from processor.errors import StateError, TransportError
from processor.worker.batch_memory import BatchMemory
from processor.worker.own_changes import OwnChanges
from processor.worker.registry import SourceRegistry

#: Failures while handling a record that are not the record's fault: they end the batch.
NOT_THE_RECORDS_FAULT = (TransportError, StateError, MemoryError)


class Flow:
    """A decision unit of one partition: the sources it knows (descriptors and catalogs),
    the batch's memory and the state operations for the platform's own changes."""

    def __init__(self, registry: SourceRegistry, memory: BatchMemory, own: OwnChanges) -> None:
        self._registry = registry
        self._memory = memory
        self._own = own
