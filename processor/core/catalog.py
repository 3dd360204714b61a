"""The entitlement catalog: (attribute, value) -> entitlement ref (R13)."""

from __future__ import annotations

from collections.abc import Iterable

from processor.models import CatalogEntry, EntitlementOwnerOut, EntitlementRef


class EntitlementCatalog:
    """Entitlement refs by (attribute, value); exact match first, folded when asked.

    ``put`` and ``remove`` let the streaming worker follow a compacted topic.
    """

    __slots__ = ("_exact", "_folded")

    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        self._exact: dict[tuple[str, str], CatalogEntry] = {}
        #: (attribute, folded value) -> the exact values folding to it.
        self._folded: dict[tuple[str, str], set[str]] = {}
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return len(self._exact)

    def put(self, entry: CatalogEntry) -> None:
        """Add or replace the entry of ``(entry.attribute, entry.value)``."""
        self._exact[(entry.attribute, entry.value)] = entry
        self._folded.setdefault((entry.attribute, entry.value.casefold()), set()).add(entry.value)

    def remove(self, attribute: str, value: str) -> None:
        """Forget the entry of ``(attribute, value)``; no error when absent."""
        if self._exact.pop((attribute, value), None) is None:
            return
        folded_key = (attribute, value.casefold())
        values = self._folded[folded_key]
        values.discard(value)
        if not values:
            del self._folded[folded_key]

    def ref(self, attribute: str, value: str, *, case_insensitive: bool) -> EntitlementRef:
        """The ref of a value; a miss gives ``{id: None, name: value, value, owner: None}``."""
        entry = self._exact.get((attribute, value))
        if entry is None and case_insensitive:
            candidates = self._folded.get((attribute, value.casefold()))
            if candidates:
                entry = self._exact[(attribute, min(candidates))]
        if entry is None:
            return EntitlementRef(id=None, name=value, value=value, owner=None)
        owner = entry.owner
        return EntitlementRef(
            id=entry.id,
            name=value if entry.name is None else entry.name,
            value=value,
            owner=None if owner is None else EntitlementOwnerOut(id=owner.id, name=owner.name),
        )
