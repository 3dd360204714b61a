"""State stores: the interface, an in-memory twin, the LMDB store and a batch overlay."""

from processor.state.lmdb_store import (
    LmdbStateStore,
    LmdbStoreFactory,
    destroy_store,
    open_store,
    store_path,
)
from processor.state.overlay import BatchOverlay
from processor.state.store import (
    MAX_KEY_BYTES,
    InMemoryStateStore,
    InMemoryStoreFactory,
    StateReader,
    StateStore,
    StoreFactory,
)

__all__ = [
    "MAX_KEY_BYTES",
    "BatchOverlay",
    "InMemoryStateStore",
    "InMemoryStoreFactory",
    "LmdbStateStore",
    "LmdbStoreFactory",
    "StateReader",
    "StateStore",
    "StoreFactory",
    "destroy_store",
    "open_store",
    "store_path",
]
