"""A partition's stored accounts: finding (R1), writing, re-keying and dropping them.

Each account is stored under ``a/<source>/<key>`` (:func:`~processor.worker.state.account_key`:
``u:<uuid>`` when it has one, else its identity key) with an index entry from its identity
key to that key, so that a record naming only a nativeIdentity still finds it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from processor import codec
from processor.core import SourcePolicy
from processor.models import Account
from processor.state.overlay import BatchOverlay
from processor.worker.state import (
    NO_INPUT_DIGEST,
    StoredAccount,
    account_key,
    k_account,
    k_index,
    k_shield,
)

#: (input digest, bytes digest) of state not stored from an aggregation record's account.
NO_INPUTS = (NO_INPUT_DIGEST, NO_INPUT_DIGEST)


class Looked(NamedTuple):
    """What the compact way of the byte path (a run, or ``AccountFlow.unchanged_compact``)
    found of one record and hands on to the later paths of the same record's decision, which
    write nothing before they read it (issue 14): the account bytes it hashed, and the value
    stored under the state key it read (``None``: nothing)."""

    #: The record (the very object: a carry of another record is not used).
    value: bytes
    #: Where the hashed bytes lie in ``value`` (start, stop) and their
    #: :func:`~processor.worker.state.bytes_digest`.
    start: int
    stop: int
    digest: bytes
    source_id: str
    key: str
    raw: bytes | None


def _get(source_id: str, key: str, state: BatchOverlay, looked: Looked | None) -> bytes | None:
    """The value stored under account key ``key``, read once per record's decision."""
    if looked is not None and looked.key == key and looked.source_id == source_id:
        return looked.raw
    return state.get(k_account(source_id, key))


def lookup(
    source_id: str,
    uuid: str | None,
    identity: str,
    state: BatchOverlay,
    looked: Looked | None = None,
) -> tuple[str, bytes | None]:
    """R1: the state key of an incoming account and its stored value, if matched.
    ``looked``: a read this record's decision made already (nothing written since)."""
    if uuid:
        key = account_key(uuid, identity)
        raw = _get(source_id, key, state, looked)
        if raw is not None:
            return key, raw
    indexed = state.get(k_index(source_id, identity))
    if indexed is not None:
        other = indexed.decode()
        # A stored account with another uuid is another account (deleted + created);
        # a key written before uuids were matched as R1 says is the same one (re-keyed).
        if not (uuid and other.startswith("u:")) or account_key(other[2:], "") == key:
            raw = _get(source_id, other, state, looked)
            if raw is not None:
                return other, raw
    return account_key(uuid, identity), None


def stored_account(stored: StoredAccount) -> Account:
    """The account a stored state holds."""
    return Account.model_validate(stored_data(stored))


def stored_data(stored: StoredAccount) -> dict[str, Any]:
    """The account a stored state holds as the plain JSON data it was stored as: the
    canonical dump of an account validated before it was stored (trusted state), so its
    ``nativeIdentity`` and ``attributes`` are those :func:`stored_account` would give."""
    data: dict[str, Any] = codec.loads_trusted(stored.account_json)
    return data


def learn(
    source_id: str,
    key: str,
    stored: StoredAccount,
    inputs: tuple[bytes, bytes],
    state: BatchOverlay,
) -> None:
    """Store the input and bytes digests of the record an unchanged account came in, when
    they are new (a new key order, state written before the digest existed or by
    provisioning), so that the next identical record takes the quickest path."""
    input_digest, bytes_digest = inputs
    if bytes_digest == NO_INPUT_DIGEST:  # bytes the byte path could not read: keep the
        bytes_digest = stored.bytes_digest  # stored ones (they still give this account)
    if (stored.input_digest, stored.bytes_digest) != (input_digest, bytes_digest):
        new = replace(stored, input_digest=input_digest, bytes_digest=bytes_digest)
        state.put(k_account(source_id, key), new.encode())


def store(
    state: BatchOverlay,
    source_id: str,
    key: str,
    identities: tuple[str, str | None],
    uuid: str | None,
    stored: StoredAccount,
) -> str:
    """Write an account stored under ``key`` until now; returns its (possibly new) key.

    ``identities``: its identity key now, and the one it was stored under (``None``: it had
    no state); ``uuid``: its uuid now.
    """
    identity, old_identity = identities
    new_key = account_key(uuid or None, identity)
    if new_key != key:  # the account gained a uuid: re-key it (and its race window)
        state.delete(k_account(source_id, key))
        window = state.get(k_shield(source_id, key))
        if window is not None:
            state.delete(k_shield(source_id, key))
            state.put(k_shield(source_id, new_key), window)
    if old_identity is not None and old_identity != identity:  # a rename: move the index
        state.delete(k_index(source_id, old_identity))
    state.put(k_account(source_id, new_key), stored.encode())
    index, value = k_index(source_id, identity), new_key.encode()
    # Most stores are of a changed account whose index entry is already this: a read is
    # cheaper than a write, which is also a changelog record (one per changed account).
    if state.get(index) != value:
        state.put(index, value)
    return new_key


def drop(policy: SourcePolicy, source_id: str, key: str, state: BatchOverlay) -> Account | None:
    """Delete the account stored under ``key`` (its race window and index entry too);
    returns what it was, ``None`` if nothing was stored."""
    raw = state.get(k_account(source_id, key))
    if raw is None:
        return None
    previous = stored_account(StoredAccount.decode(raw))
    state.delete(k_account(source_id, key))
    state.delete(k_shield(source_id, key))
    index = k_index(source_id, policy.identity_key(previous.nativeIdentity))
    if state.get(index) == key.encode():
        state.delete(index)
    return previous
