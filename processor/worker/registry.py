"""The registry of source descriptors and entitlement catalogs, fed from compacted topics.

``ncd.sources`` is keyed by sourceId (a tombstone removes the source); ``ncd.entitlements``
by ``sourceId/attribute/value`` (a tombstone removes the entry). The runner reads both in full
at start and then follows them, calling :meth:`SourceRegistry.apply_source` and
:meth:`SourceRegistry.apply_entitlement` for each record.
"""

from __future__ import annotations

from processor import codec
from processor.core import EntitlementCatalog, SourcePolicy
from processor.errors import InputError
from processor.models import CatalogEntry, SourceDescriptor


class SourceRegistry:
    """Compiled policies and catalogs of every known source."""

    def __init__(self) -> None:
        self._policies: dict[str, SourcePolicy] = {}
        self._catalogs: dict[str, EntitlementCatalog] = {}

    def __len__(self) -> int:
        return len(self._policies)

    def policy(self, source_id: str) -> SourcePolicy | None:
        """The compiled policy of a source, or ``None`` if the source is unknown."""
        return self._policies.get(source_id)

    def catalog(self, source_id: str) -> EntitlementCatalog:
        """The entitlement catalog of a source (empty if none was published)."""
        catalog = self._catalogs.get(source_id)
        if catalog is None:
            catalog = self._catalogs[source_id] = EntitlementCatalog()
        return catalog

    def put_source(self, source: SourceDescriptor) -> None:
        """Add or replace a source descriptor."""
        self._policies[source.id] = SourcePolicy.from_source(source)

    def apply_source(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``ncd.sources`` record; :class:`InputError` when it is unusable."""
        if value is None:
            if key is None:
                raise InputError("source tombstone without a key")
            self._policies.pop(key.decode("utf-8", "replace"), None)
            return
        source = codec.validate(SourceDescriptor, codec.loads(value), "source descriptor")
        if key is not None and key.decode("utf-8", "replace") != source.id:
            raise InputError("source record key differs from its id")
        self.put_source(source)

    def apply_entitlement(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``ncd.entitlements`` record; :class:`InputError` when it is unusable."""
        if value is None:
            parts = (key or b"").decode("utf-8", "replace").split("/", 2)
            if len(parts) != 3:
                raise InputError("entitlement tombstone key is not sourceId/attribute/value")
            catalog = self._catalogs.get(parts[0])  # none to create for a stray tombstone
            if catalog is not None:
                catalog.remove(parts[1], parts[2])
            return
        entry = codec.validate(CatalogEntry, codec.loads(value), "catalog entry")
        if not entry.sourceId:
            raise InputError("catalog entry on ncd.entitlements lacks sourceId")
        self.catalog(entry.sourceId).put(entry)
