"""The identity index is written only when it changes (a changed account writes its state alone)."""

from __future__ import annotations

from processor.state import BatchOverlay
from processor.state.store import InMemoryStateStore
from processor.worker import accounts
from processor.worker.state import StoredAccount, k_account, k_index

SRC = "ad-1"


def _stored(as_of_ms: int) -> StoredAccount:
    return StoredAccount(as_of_ms, b"d" * 32, b'{"nativeIdentity":"CN=Ann"}')


def test_a_changed_account_under_its_key_writes_no_index_entry() -> None:
    """Storing an account again under the same key and identity leaves the index unwritten."""
    store = InMemoryStateStore()
    first = BatchOverlay(store)
    key = accounts.store(first, SRC, "u:{a}", ("cn=ann", None), "{a}", _stored(1))
    assert set(first.writes) == {k_account(SRC, key), k_index(SRC, "cn=ann")}
    store.apply(dict(first.writes), None)
    again = BatchOverlay(store)
    accounts.store(again, SRC, key, ("cn=ann", "cn=ann"), "{a}", _stored(2))
    assert set(again.writes) == {k_account(SRC, key)}


def test_a_renamed_account_moves_its_index_entry() -> None:
    """A new identity deletes the old index entry and writes the new one."""
    store = InMemoryStateStore()
    first = BatchOverlay(store)
    key = accounts.store(first, SRC, "u:{a}", ("cn=ann", None), "{a}", _stored(1))
    store.apply(dict(first.writes), None)
    again = BatchOverlay(store)
    accounts.store(again, SRC, key, ("cn=anna", "cn=ann"), "{a}", _stored(2))
    assert again.writes[k_index(SRC, "cn=ann")] is None
    assert again.writes[k_index(SRC, "cn=anna")] == key.encode()
