"""The platform's own changes in a partition's state: holds, pending records, race window.

Used by :class:`~processor.worker.partition.PartitionProcessor`; every piece of state lives
in the partition's store (so in its changelog) under the ``h/``, ``q/``, ``t/`` and ``x/``
namespaces of :mod:`processor.worker.state`, and so survives restarts and moves with the
partition. Time is data time: provisioning ``completedAt`` against aggregation
``startedAt``, never the wall clock, so a replay decides exactly as the first run did.

- Held: a completed record for an account with no stored state yet waits (``h/``) until the
  account appears; if the aggregation that brings it started before the record completed,
  the record is applied on top of what it read (and the race window opens).
- Pending: a ``PENDING`` record waits (``q/``) until an aggregation shows exactly its
  changes (absorbed: not reported) or a ``FAILED`` / completed record for the same input
  arrives.
- Race window (``t/``): after a record is applied, records of aggregations that started
  before its ``completedAt`` cannot report or roll back the attributes it touched.
- Gone (``x/``): after a ``notFound`` answer, records of aggregations that started before
  it cannot bring the account back.
- Expiry: held and pending records older than the hold (``provisioning_hold_s``, measured
  against the start of completing aggregations) are dropped, and so are holds, shields and
  gone markers that no running aggregation can need any more.

Almost no account has any of these, yet every changed or created account asks: a
:class:`Present` index answers "nothing here" from memory, so only the few accounts that may
have something read the state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from processor import codec
from processor.core import SourcePolicy, apply_provisioning, shield, shows_changes
from processor.core.provisioning import provisioning_order, touched_attributes
from processor.models import Account, AttributeValue, ProvisioningRecord, epoch_ms
from processor.state.overlay import BatchOverlay
from processor.worker.state import Held, k_gone, k_held, k_pending, k_shield, record_id


def completed_ms(record: ProvisioningRecord) -> int | None:
    """``completedAt`` in ms since the epoch; ``None`` when absent."""
    return None if record.completedAt is None else epoch_ms(record.completedAt)


def _dump(record: ProvisioningRecord) -> dict[str, object]:
    return record.model_dump(mode="json", exclude_none=True)


def input_id(record: ProvisioningRecord) -> str:
    """What pending, completed and failed records of one command have in common."""
    return record_id({"sourceId": record.sourceId, "input": record.input.model_dump(mode="json")})


class Present:
    """Which ``h/``, ``q/``, ``t/`` and ``x/`` keys a partition's state may hold (a superset).

    Per namespace and source (``base``, e.g. ``q/<source>/``): every such key, and every
    prefix of it that ends in a ``/`` (what :meth:`OwnChanges.absorb` and
    :meth:`OwnChanges.release` scan for an identity). A key or prefix missing here is missing
    from the state, so its read or scan is skipped.

    Built from the state on a base's first use (a processor is made after its store is
    restored, and only it writes the store from then on); every put of these namespaces adds
    to it (:class:`OwnChanges` makes them all, and :meth:`moved` reports the one
    :func:`~processor.worker.accounts.store` makes). Only :meth:`rebuild` shrinks it: to what
    the state shows plus every key the batch wrote, deletes included, so that it still holds
    every key the store has whether the batch then commits or aborts.
    """

    def __init__(self) -> None:
        self._keys: dict[bytes, set[bytes]] = {}

    def may_hold(self, state: BatchOverlay, base: bytes, key: bytes) -> bool:
        """Whether the state may hold ``key`` (or, for a prefix ending in ``/``, keys under it)."""
        keys = self._keys.get(base)
        if keys is None:
            keys = self.rebuild(state, base)
        return key in keys

    def add(self, base: bytes, key: bytes) -> None:
        """Note a key about to be put (a base not built yet reads it from the state)."""
        keys = self._keys.get(base)
        if keys is not None:
            _note(keys, base, key)

    def moved(self, base: bytes, key: bytes, new_key: bytes) -> None:
        """``key``'s value may have been put under ``new_key`` too (an account re-keyed)."""
        keys = self._keys.get(base)
        if keys is not None and key in keys:
            _note(keys, base, new_key)

    def rebuild(self, state: BatchOverlay, base: bytes) -> set[bytes]:
        """Index ``base`` afresh: the keys ``state`` shows and every key the batch wrote."""
        keys: set[bytes] = set()
        for key, _ in state.scan(base):
            _note(keys, base, key)
        for key in state.writes:
            if key.startswith(base):
                _note(keys, base, key)
        self._keys[base] = keys
        return keys


def _note(keys: set[bytes], base: bytes, key: bytes) -> None:
    """Add ``key`` and its prefixes that end in ``/`` after ``base`` to ``keys``."""
    keys.add(key)
    slash = key.find(b"/", len(base))
    while slash >= 0:
        keys.add(key[: slash + 1])
        slash = key.find(b"/", slash + 1)


class OwnChanges:
    """State operations for provisioning records; ``hold_ms`` bounds held and pending ones."""

    def __init__(self, hold_ms: int) -> None:
        self.hold_ms = hold_ms
        self._present = Present()

    def _put(self, state: BatchOverlay, base: bytes, key: bytes, value: bytes) -> None:
        self._present.add(base, key)
        state.put(key, value)

    # ----------------------------------------------------------- provisioning-topic side

    def hold(
        self, state: BatchOverlay, identity: str, record: ProvisioningRecord, ref: int
    ) -> None:
        """Keep a completed record until its account appears (ordered by ``ref``)."""
        rid = f"{max(ref, 0):020d}/{record_id(_dump(record))}"
        key = k_held(record.sourceId, identity, rid)
        self._put(state, k_held(record.sourceId), key, Held(ref, _dump(record)).encode())

    def pend(
        self, state: BatchOverlay, identity: str, record: ProvisioningRecord, ref: int
    ) -> None:
        """Keep a PENDING record until it is absorbed, withdrawn or expires."""
        key = k_pending(record.sourceId, identity, input_id(record))
        self._put(state, k_pending(record.sourceId), key, Held(ref, _dump(record)).encode())

    def withdraw(self, state: BatchOverlay, identity: str, record: ProvisioningRecord) -> bool:
        """Forget the pending record of the same command; whether there was one."""
        key = k_pending(record.sourceId, identity, input_id(record))
        if state.get(key) is None:
            return False
        state.delete(key)
        return True

    def open_window(
        self, state: BatchOverlay, source_id: str, key: str, names: set[str], until: int
    ) -> None:
        """Shield ``names`` of an account from aggregations that started before ``until``."""
        raw = state.get(k_shield(source_id, key))
        window: dict[str, int] = {} if raw is None else codec.loads(raw)
        for name in names:
            window[name] = max(window.get(name, until), until)
        self._put(state, k_shield(source_id), k_shield(source_id, key), codec.dumps(window))

    def mark_gone(self, state: BatchOverlay, source_id: str, identity: str, at: int) -> None:
        """Remember that an account is gone as of ``at`` (a notFound answer)."""
        self._put(state, k_gone(source_id), k_gone(source_id, identity), codec.dumps(at))

    # ----------------------------------------------------------- aggregation side

    def shielded(
        self,
        state: BatchOverlay,
        source_id: str,
        key: str,
        started_ms: int,
        current: Account,
        stored: Mapping[str, AttributeValue],
    ) -> Account:
        """``current`` with the attributes still in a race window taken from ``stored`` (the
        stored account's attributes)."""
        if not self._present.may_hold(state, k_shield(source_id), k_shield(source_id, key)):
            return current
        raw = state.get(k_shield(source_id, key))
        if raw is None:
            return current
        window: dict[str, int] = codec.loads(raw)
        inside = {name for name, until in window.items() if until > started_ms}
        return shield(current, stored, sorted(inside)) if inside else current

    def absorb(
        self,
        policy: SourcePolicy,
        state: BatchOverlay,
        source_id: str,
        identity: str,
        stored: dict[str, Any],
        current: Account,
    ) -> Mapping[str, AttributeValue]:
        """The attributes of ``stored`` (the previous account as stored: plain JSON data,
        validated when it was stored) with every pending record that ``current`` shows
        applied (absorbed). Almost no account has one: only then is it made a model."""
        prefix = k_pending(source_id, identity, "")
        attributes: Mapping[str, AttributeValue] = stored["attributes"]
        if not self._present.may_hold(state, k_pending(source_id), prefix):
            return attributes
        previous: Account | None = None
        for raw_key, record in self._records(policy, state, prefix, identity):
            if previous is None:
                previous = Account.model_validate(stored)
            if shows_changes(policy, previous, current, record):
                previous = apply_provisioning(policy, previous, record)
                state.delete(raw_key)
        return attributes if previous is None else previous.attributes

    def release(
        self,
        policy: SourcePolicy,
        state: BatchOverlay,
        source_id: str,
        identity: str,
        current: Account,
        started_ms: int,
    ) -> tuple[Account, dict[str, int]]:
        """Apply the held records an aggregation's read predates; drop every held one.

        Returns the account to store and the race window to open (attribute -> until).
        """
        window: dict[str, int] = {}
        prefix = k_held(source_id, identity, "")
        if not self._present.may_hold(state, k_held(source_id), prefix):
            return current, window
        held = list(self._records(policy, state, prefix, identity))
        for raw_key, _ in held:
            state.delete(raw_key)
        for record in provisioning_order(record for _, record in held):
            done = completed_ms(record)
            if done is not None and done <= started_ms:
                continue  # the aggregation read the source after this change
            before, current = current, apply_provisioning(policy, current, record)
            if done is not None:
                for name in touched_attributes(before, current, record):
                    window[name] = max(window.get(name, done), done)
        return current, window

    def moved(self, source_id: str, key: str, new_key: str) -> None:
        """An account stored under ``key`` is now stored under ``new_key`` (its race window,
        if any, moved with it: :func:`~processor.worker.accounts.store`)."""
        self._present.moved(
            k_shield(source_id), k_shield(source_id, key), k_shield(source_id, new_key)
        )

    def gone_at(self, state: BatchOverlay, source_id: str, identity: str) -> int | None:
        """When the account was reported gone, if it was (and not seen again since)."""
        if not self._present.may_hold(state, k_gone(source_id), k_gone(source_id, identity)):
            return None
        raw = state.get(k_gone(source_id, identity))
        return None if raw is None else int(codec.loads(raw))

    # ----------------------------------------------------------- expiry

    def expire(self, state: BatchOverlay, source_id: str, started_ms: int, settled_ms: int) -> None:
        """Drop what no aggregation can need any more.

        ``started_ms`` is the start of the aggregation completing now, ``settled_ms`` the
        earliest start of any aggregation still running (or ``started_ms``): nothing older
        can arrive for a record, window or marker at or before it.
        """
        horizon = started_ms - self.hold_ms
        for raw_key, value in list(state.scan(k_held(source_id))):
            ref = Held.decode(value).ref_ms
            if ref < horizon or ref <= settled_ms:
                state.delete(raw_key)
        for raw_key, value in list(state.scan(k_pending(source_id))):
            if Held.decode(value).ref_ms < horizon:
                state.delete(raw_key)
        for raw_key, value in list(state.scan(k_gone(source_id))):
            if int(codec.loads(value)) <= settled_ms:
                state.delete(raw_key)
        for raw_key, value in list(state.scan(k_shield(source_id))):
            window: dict[str, int] = codec.loads(value)
            left = {name: until for name, until in window.items() if until > settled_ms}
            if not left:
                state.delete(raw_key)
            elif len(left) < len(window):
                state.put(raw_key, codec.dumps(left))
        for base in (k_held, k_pending, k_gone, k_shield):
            self._present.rebuild(state, base(source_id))

    def _records(
        self, policy: SourcePolicy, state: BatchOverlay, prefix: bytes, identity: str
    ) -> Iterator[tuple[bytes, ProvisioningRecord]]:
        """The records under a prefix that target ``identity`` (a "/" in an identity could
        make another account's keys share the prefix)."""
        for raw_key, value in list(state.scan(prefix)):
            record = ProvisioningRecord.model_validate(Held.decode(value).record)
            target = record.target()
            if target is not None and policy.identity_key(target) == identity:
                yield raw_key, record
