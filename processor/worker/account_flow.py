"""How one ``account`` record is decided (docs/records.md; docs/rules.md R1-R9 and R15).

Three paths, quickest first; each sends what it cannot decide on to the next, with what the
compact way found (:class:`~processor.worker.accounts.Looked`: the bytes digest, the state
under the key it read), which the later ones use rather than read and hash again:

1. The byte path (:meth:`AccountFlow.unchanged_compact`, then
   :meth:`AccountFlow.unchanged_bytes`): the record's ``account`` bytes are the very bytes
   its state was last stored from, so it is unchanged; the account is not decoded (its
   state is found by its uuid, found in its bytes, or by its identity, read from them).
2. The input path (:meth:`AccountFlow.unchanged_input`): the decoded ``account`` is the very
   input its state was stored from (canonical form), so it is unchanged; nothing validated.
3. The full path (:meth:`AccountFlow.decide`): the record validated, matched to its stored
   state (R1), the platform's own changes applied (race window, held provisioning), the
   state written and the event decided by the core. Until the source's baseline the state
   is only stored. The stored account is read as the plain JSON data it was stored as (it
   was validated before it was stored; a model is made of it only for a pending
   provisioning record), and the state written is the record's own canonical JSON when
   validation left the account as it came (:class:`Given`), else the model's dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from processor import codec
from processor.core import decide_event, update_event, uuid_key
from processor.core.policy import SourcePolicy
from processor.errors import InputError
from processor.keys import record_key
from processor.models import Account, AccountRecord, AggregationMode
from processor.state.overlay import BatchOverlay
from processor.worker import accounts
from processor.worker.accounts import NO_INPUTS, Looked
from processor.worker.envelope import AccountBytes, CompactAccount, account_identity
from processor.worker.flow import Flow
from processor.worker.outcome import Outcome, Verdict, emitted
from processor.worker.state import (
    MAX_PART_BYTES,
    AggregationInfo,
    StoredAccount,
    account_key,
    canonical_digest,
    k_account,
    k_gone,
    k_pending_delete,
)

#: Uuids up to this many characters give state keys short enough to be kept as they are.
_SHORT_UUID = (MAX_PART_BYTES - 2) // 4
_UNCHANGED = Verdict.UNCHANGED


@dataclass(frozen=True, slots=True)
class _Draft:
    """The account a record will store: its canonical JSON (what is stored), its digest and
    input digests."""

    account: Account
    json: bytes
    digest: bytes
    #: (input digest, bytes digest) of the record it came in; NO_INPUTS once the platform's
    #: own changes made it differ from that record.
    inputs: tuple[bytes, bytes]

    @staticmethod
    def of(account: Account, inputs: tuple[bytes, bytes], known: Given | None = None) -> _Draft:
        """``known``: the record's ``account`` as it came (its canonical JSON's digest is
        ``inputs[0]``), which a validated account usually dumps to: then that JSON is
        stored, neither dumped nor hashed again."""
        if known is not None and _dumps_as_given(account, known.data):
            return _Draft(account, known.canonical, inputs[0], inputs)
        # One encoding gives both the digest and the stored JSON (sorted keys: any key
        # order reads back the same account).
        canonical = codec.dumps_canonical(account.model_dump(mode="json", exclude_none=True))
        return _Draft(account, canonical, canonical_digest(canonical), inputs)


class Given(NamedTuple):
    """An account record's ``account`` as it came: its data and canonical JSON."""

    canonical: bytes
    data: dict[str, Any]


_ATTRIBUTES: set[str] = {"attributes"}  # (a model_dump exclusion: never changed)
#: Members of an account that validation keeps as they are when they come as this type (an
#: exact ``str`` or ``bool``, not ``null``), and that dump as they came.
_KEPT_AS_GIVEN = {
    "id": str,
    "nativeIdentity": str,
    "uuid": str,
    "name": str,
    "correlated": bool,
    "disabled": bool,
    "locked": bool,
    "attributes": dict,
}
#: The text members of an identity and of its manager (``email`` defaults to ``""``: it must
#: be given for the block to dump as it came).
_IDENTITY_TEXTS = frozenset({"id", "name", "alias", "email"})
_MANAGER_TEXTS = frozenset({"id", "name", "email"})


def _kept_as_given(given: dict[str, Any]) -> bool:
    """Whether validation keeps every member of the account ``given`` as it came."""
    kept = _KEPT_AS_GIVEN
    for name, value in given.items():
        if kept.get(name) is not type(value) and not (
            name == "identity" and _texts_only(value, _IDENTITY_TEXTS, manager=True)
        ):
            return False
    return True


def _texts_only(block: Any, texts: frozenset[str], *, manager: bool = False) -> bool:
    """Whether ``block`` is an object of text members among ``texts`` with ``email`` given
    (and, when ``manager``, a manager of the same kind)."""
    if type(block) is not dict or "email" not in block:
        return False
    for name, value in block.items():
        if name == "manager" and manager:
            if not _texts_only(value, _MANAGER_TEXTS):
                return False
        elif name not in texts or type(value) is not str:
            return False
    return True


def _dumps_as_given(account: Account, given: dict[str, Any]) -> bool:
    """Whether ``account``, validated from ``given``, dumps to the same canonical JSON.

    Validation keeps attribute values as they are (strict JSON scalars and lists of them),
    so only the rest can differ (defaults filled in, ``null`` and unknown members dropped,
    lax coercions). Mostly the rest holds only members of the kinds validation keeps
    (:func:`_kept_as_given`): then nothing differs; else that small rest is compared, as
    canonical JSON (``True == 1`` in Python, never in JSON), not the whole account (a model
    dump of ~3 KB of attributes costs 6 us).
    """
    if _kept_as_given(given):
        return True
    head = account.model_dump(mode="json", exclude_none=True, exclude=_ATTRIBUTES)
    rest = {name: value for name, value in given.items() if name != "attributes"}
    return codec.dumps_canonical(head) == codec.dumps_canonical(rest)


class AccountFlow(Flow):
    """Decides account records of one partition against its state."""

    #: The R1 lookup of the record being decided ((source, uuid, identity key), what it
    #: found): its paths ask for the same account, and none writes before the last one read.
    _lookup: tuple[tuple[str, str | None, str], tuple[str, bytes | None]] | None = None

    def new_record(self) -> None:
        """Forget the lookup of the record decided before (called before each record)."""
        self._lookup = None

    def _looked_up(
        self, asked: tuple[str, str | None, str], state: BatchOverlay, looked: Looked | None
    ) -> tuple[str, bytes | None]:
        """:func:`accounts.lookup` of ``asked`` (source, uuid, identity key), once a record."""
        known = self._lookup
        if known is not None and known[0] == asked:
            return known[1]
        found = accounts.lookup(*asked, state, looked)
        self._lookup = (asked, found)
        return found

    # ----------------------------------------------------------------- fast paths

    def unchanged_compact(
        self, seen: CompactAccount, value: bytes, state: BatchOverlay
    ) -> Outcome | Looked | None:
        """The byte path, quickest: a compact record ``value`` (nothing decoded, see
        :func:`~processor.worker.envelope.compact_account`) whose account bytes are the very
        bytes the state under its uuid hint was last stored from is unchanged. Else the next
        path decides; :class:`~processor.worker.accounts.Looked`: it may use the state this
        one read (``None``: none read).

        Nothing the record says is trusted: only the stored bytes digest decides. The bytes
        of an account state under ``u:<uuid>`` are those of an account whose uuid R1 spells
        ``<uuid>`` (or, in state stored before R1 spelled uuids one way, is ``<uuid>``; a hint
        R1 would spell otherwise is not used). So when the record's bytes are those, the
        record is that account's: its R1 lookup reads this very state, and its record key is
        ``sourceId/<uuid>``, whatever the hint and the record's key were.
        """
        uuid = seen.uuid_hint
        if not uuid or uuid_key(uuid) != uuid:  # (no state is keyed by an empty uuid)
            return None
        source_id, aggregation_id = seen.source_id, seen.aggregation_id
        if self._registry.policy(source_id) is None:
            return None
        agg = self._memory.meta_of(source_id, state).running.get(aggregation_id)
        if agg is None:
            return None
        # account_key(uuid, ""): a short uuid is never hashed (at most 4 bytes a character).
        key = f"u:{uuid}" if len(uuid) <= _SHORT_UUID else account_key(uuid, "")
        raw = state.get(k_account(source_id, key))
        if raw is None or not StoredAccount.matches_bytes(raw, agg.started_ms, seen.digest):
            return Looked(value, seen.start, seen.stop, seen.digest, source_id, key, raw)
        self._memory.saw(source_id, aggregation_id, key)
        expected = f"{source_id}/{uuid}".encode()  # record_key(source_id, uuid, ...)
        return Outcome(_UNCHANGED, source_id=source_id, record_key=expected)

    def unchanged_bytes(
        self,
        seen: AccountBytes,
        bytes_digest: bytes,
        state: BatchOverlay,
        looked: Looked | None = None,
    ) -> Outcome | None:
        """The byte path: an account record whose ``account`` bytes (their digest
        ``bytes_digest``) are the very bytes its state was last stored from is unchanged;
        decided without decoding the account (those bytes were validated when they were
        stored) but its identity, read from its bytes to find its state (R1). ``None``: the
        next path decides. ``looked``: what an earlier path of this record read (here and
        below)."""
        identity = account_identity(seen)
        if identity is None:
            return None
        native, uuid = identity
        source_id, aggregation_id = seen.source_id, seen.aggregation_id
        found = self._stored(source_id, aggregation_id, (native, uuid), state, looked)
        if found is None:
            return None
        key, raw, agg = found
        if not StoredAccount.matches_bytes(raw, agg.started_ms, bytes_digest):
            return None
        self._memory.saw(source_id, aggregation_id, key)
        expected = record_key(source_id, uuid, native)
        return Outcome(Verdict.UNCHANGED, source_id=source_id, record_key=expected)

    def unchanged_input(
        self,
        obj: dict[str, Any],
        account: dict[str, Any],
        inputs: tuple[bytes, bytes],
        state: BatchOverlay,
        looked: Looked | None = None,
    ) -> Outcome | None:
        """The fast path: an account record whose ``account`` is the very input its state was
        last stored from (canonical form: key order and spacing do not matter) is unchanged;
        decided without validating the record (that input was validated when it was stored).
        Its bytes differed from the stored ones, so their digest is stored (once) for the byte
        path. ``None`` sends the record down the full path, which decides everything else
        (stale, changed, malformed) exactly as before.
        """
        source_id, aggregation_id = obj.get("sourceId"), obj.get("aggregationId")
        native, uuid = account.get("nativeIdentity"), account.get("uuid")
        if (
            obj.get("deleted", False) is not False
            or not isinstance(source_id, str)
            or not isinstance(aggregation_id, str)
            or not isinstance(native, str)
            or not (uuid is None or isinstance(uuid, str))
        ):
            return None
        found = self._stored(source_id, aggregation_id, (native, uuid), state, looked)
        if found is None:
            return None
        key, raw, agg = found
        if not StoredAccount.matches_input(raw, agg.started_ms, inputs[0]):
            return None
        accounts.learn(source_id, key, StoredAccount.decode(raw), inputs, state)
        self._memory.saw(source_id, aggregation_id, key)
        expected = record_key(source_id, uuid, native)
        return Outcome(Verdict.UNCHANGED, source_id=source_id, record_key=expected)

    def _running(
        self, source_id: str, aggregation_id: str, state: BatchOverlay
    ) -> tuple[SourcePolicy, AggregationInfo] | None:
        """The policy of an account record's source and the running aggregation it names,
        if both are known."""
        policy = self._registry.policy(source_id)
        if policy is None:
            return None
        agg = self._memory.meta_of(source_id, state).running.get(aggregation_id)
        return None if agg is None else (policy, agg)

    def _stored(
        self,
        source_id: str,
        aggregation_id: str,
        identity: tuple[str, str | None],
        state: BatchOverlay,
        looked: Looked | None,
    ) -> tuple[str, bytes, AggregationInfo] | None:
        """(state key, stored value, running aggregation) of an account record's account
        (``identity``: its nativeIdentity and uuid), if its source is known, its aggregation
        running and the account stored."""
        found = self._running(source_id, aggregation_id, state)
        if found is None:
            return None
        policy, agg = found
        native, uuid = identity
        key, raw = self._looked_up((source_id, uuid, policy.identity_key(native)), state, looked)
        return None if raw is None else (key, raw, agg)

    # ----------------------------------------------------------------- the full path

    def decide(
        self,
        policy: SourcePolicy,
        record: AccountRecord,
        state: BatchOverlay,
        inputs: tuple[bytes, bytes] = NO_INPUTS,
        looked: Looked | None = None,
        given: Given | None = None,
    ) -> Outcome:
        """Decide a validated account record: match, apply own changes, store, report.
        ``looked``: a state read this record's decision made already (nothing written since);
        ``given``: its ``account`` as it came (``inputs[0]`` is its canonical JSON's digest)."""
        source_id = record.sourceId
        meta, agg, done = self._memory.running(source_id, record.aggregationId, state)
        if agg is None:
            if done:
                return Outcome(Verdict.STALE, source_id=source_id)
            raise InputError("no aggregation.started for this aggregation in this partition")
        identity = policy.identity_key(record.account.nativeIdentity)
        asked = (source_id, record.account.uuid, identity)
        key, stored_raw = self._looked_up(asked, state, looked)
        self._lookup = None  # (it writes from here on)
        self._memory.saw(source_id, record.aggregationId, key)
        if record.deleted:
            return self._flag_deleted(record, agg, key, stored_raw is not None, state)
        draft = _Draft.of(record.account, inputs, given)
        previous: dict[str, Any] | None = None  # the stored account as plain data
        window: dict[str, int] = {}
        if stored_raw is not None:
            found = self._against_stored(
                source_id, key, agg, StoredAccount.decode(stored_raw), draft, state
            )
            if isinstance(found, Outcome):
                return found
            previous, draft = found
        else:
            made = self._new_account(policy, source_id, identity, agg, draft, state)
            if isinstance(made, Outcome):
                return made
            draft, window = made
            self._memory.changing(source_id)
            agg.created += 1
        old_identity = None if previous is None else policy.identity_key(previous["nativeIdentity"])
        stored = StoredAccount(agg.started_ms, draft.digest, draft.json, *draft.inputs)
        new_key = accounts.store(
            state, source_id, key, (identity, old_identity), draft.account.uuid, stored
        )
        if new_key != key:  # re-keyed: its race window, if any, moved with it
            self._own.moved(source_id, key, new_key)
        if window:
            self._own.open_window(state, source_id, new_key, set(window), max(window.values()))
        if not meta.baseline:
            return Outcome(Verdict.STORED, source_id=source_id)
        return self._report(policy, record, identity, previous, draft.account, state)

    def _flag_deleted(
        self,
        record: AccountRecord,
        agg: AggregationInfo,
        key: str,
        stored: bool,
        state: BatchOverlay,
    ) -> Outcome:
        """A DELTA aggregation's ``deleted: true``: the account is deleted at its completion."""
        if agg.mode != AggregationMode.DELTA:
            raise InputError("deleted: true is only allowed in DELTA aggregations")
        if stored:
            state.put(k_pending_delete(record.sourceId, record.aggregationId, key), b"")
        return Outcome(Verdict.STORED, source_id=record.sourceId)

    def _against_stored(
        self,
        source_id: str,
        key: str,
        agg: AggregationInfo,
        stored: StoredAccount,
        draft: _Draft,
        state: BatchOverlay,
    ) -> Outcome | tuple[dict[str, Any], _Draft]:
        """A known account: stale, unchanged, or (its previous state as plain data, what to
        store)."""
        if stored.as_of_ms > agg.started_ms:
            return Outcome(Verdict.STALE, source_id=source_id)
        if stored.digest == draft.digest:
            # Same account, perhaps in a new input form (or state written by provisioning).
            accounts.learn(source_id, key, stored, draft.inputs, state)
            return Outcome(Verdict.UNCHANGED, source_id=source_id)
        previous = accounts.stored_data(stored)
        current = draft.account
        shielded = self._own.shielded(
            state, source_id, key, agg.started_ms, current, previous["attributes"]
        )
        if shielded is not current:  # the race window: keep what provisioning set
            draft = _Draft.of(shielded, NO_INPUTS)  # the state is no longer this input
            if stored.digest == draft.digest:
                return Outcome(Verdict.UNCHANGED, source_id=source_id)
        return previous, draft

    def _new_account(
        self,
        policy: SourcePolicy,
        source_id: str,
        identity: str,
        agg: AggregationInfo,
        draft: _Draft,
        state: BatchOverlay,
    ) -> Outcome | tuple[_Draft, dict[str, int]]:
        """An account with no state: stale if gone since, else what to store (with held
        provisioning applied) and the race window that opens (attribute -> completedAt)."""
        gone = self._own.gone_at(state, source_id, identity)
        if gone is not None:
            if agg.started_ms < gone:  # read before the connector found it gone
                return Outcome(Verdict.STALE, source_id=source_id)
            state.delete(k_gone(source_id, identity))
        current = draft.account
        released, window = self._own.release(
            policy, state, source_id, identity, current, agg.started_ms
        )
        if released is not current:
            draft = _Draft.of(released, NO_INPUTS)  # held provisioning changed it
        return draft, window

    def _report(
        self,
        policy: SourcePolicy,
        record: AccountRecord,
        identity: str,
        previous: dict[str, Any] | None,
        current: Account,
        state: BatchOverlay,
    ) -> Outcome:
        """The event of a stored account after the baseline (pending provisioning absorbed);
        ``previous``: its stored state as plain data (``None``: created)."""
        source_id = record.sourceId
        catalog, context = self._registry.catalog(source_id), record.aggregationId
        if previous is None:
            event = decide_event(policy, None, current, catalog, context=context)
        else:
            before = self._own.absorb(policy, state, source_id, identity, previous, current)
            event = update_event(policy, before, current, catalog, context=context)
        if event is None:
            return Outcome(Verdict.STORED, source_id=source_id)
        return emitted(policy, [event], source_id)
