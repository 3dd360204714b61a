"""The entitlement catalog: (attribute, value) -> entitlement ref (R13)."""

from __future__ import annotations

from collections.abc import Iterable

from processor.core.event import RefJson
from processor.core.values import nfc
from processor.models import CatalogEntry

CatalogKey = tuple[str, str]
#: The most refs a catalog keeps built (about 1 KB each); past it they are built anew.
_MAX_REFS = 65_536


def catalog_key(attribute: str, value: str) -> CatalogKey:
    """The key an entry is found by: the attribute and the value in NFC (R4's strings)."""
    return (attribute, nfc(value))


class EntitlementCatalog:
    """Entitlement refs by (attribute, value); exact match (in NFC) first, folded when asked.

    ``put`` and ``remove`` let the streaming worker follow a compacted topic, where a newer
    record for a key replaces the older one. A catalog *file* must not name one (attribute,
    value) twice (R13); readers check that with :func:`catalog_key` before building this.
    On the topic, two records whose values differ only in Unicode form are two keys: both are
    kept and the one whose value sorts first is used, so the result never depends on the order
    they arrived in.
    """

    __slots__ = ("_entries", "_folded", "_refs")

    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        #: catalog key -> {value as written: entry}
        self._entries: dict[CatalogKey, dict[str, CatalogEntry]] = {}
        #: (attribute, folded NFC value) -> the NFC values folding to it.
        self._folded: dict[CatalogKey, set[str]] = {}
        #: (attribute, value, case_insensitive) -> its ref, as :meth:`ref` last built it (refs
        #: are read-only); emptied by every change and when it reaches _MAX_REFS.
        self._refs: dict[tuple[str, str, bool], RefJson] = {}
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return sum(map(len, self._entries.values()))

    def put(self, entry: CatalogEntry) -> None:
        """Add or replace the entry of ``(entry.attribute, entry.value)``."""
        key = catalog_key(entry.attribute, entry.value)
        self._refs.clear()
        self._entries.setdefault(key, {})[entry.value] = entry
        self._folded.setdefault((key[0], key[1].casefold()), set()).add(key[1])

    def remove(self, attribute: str, value: str) -> None:
        """Forget the entry of ``(attribute, value)``; no error when absent."""
        key = catalog_key(attribute, value)
        written = self._entries.get(key)
        if written is None or written.pop(value, None) is None:
            return
        self._refs.clear()
        if written:
            return
        del self._entries[key]
        folded_key = (attribute, key[1].casefold())
        values = self._folded[folded_key]
        values.discard(key[1])
        if not values:
            del self._folded[folded_key]

    def _entry(self, key: CatalogKey) -> CatalogEntry | None:
        written = self._entries.get(key)
        if not written:
            return None
        return written[min(written)] if len(written) > 1 else next(iter(written.values()))

    def ref(self, attribute: str, value: str, *, case_insensitive: bool) -> RefJson:
        """The ref of a value; a miss gives ``{id: None, name: value, value, owner: None}``.

        ``value`` is reported as given (the account's own spelling), whatever form matched.
        Refs are kept once built (a changed account names the same groups again and again).
        """
        known = self._refs.get((attribute, value, case_insensitive))
        if known is not None:
            return known
        if len(self._refs) >= _MAX_REFS:
            self._refs.clear()
        ref = self._ref(attribute, value, case_insensitive=case_insensitive)
        self._refs[(attribute, value, case_insensitive)] = ref
        return ref

    def _ref(self, attribute: str, value: str, *, case_insensitive: bool) -> RefJson:
        key = catalog_key(attribute, value)
        entry = self._entry(key)
        if entry is None and case_insensitive:
            candidates = self._folded.get((attribute, key[1].casefold()))
            if candidates:
                entry = self._entry((attribute, min(candidates)))
        if entry is None:
            return {"id": None, "name": value, "value": value, "owner": None}
        owner = entry.owner
        return {
            "id": entry.id,
            "name": value if entry.name is None else entry.name,
            "value": value,
            "owner": None
            if owner is None
            else {"id": owner.id, "name": owner.name, "type": "IDENTITY"},
        }
