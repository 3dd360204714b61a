"""Key layout and value encoding of one partition's state store.

Every key starts with a one-letter namespace and the source id::

    a/<sourceId>/<accountKey>              the account's last state (see StoredAccount)
    n/<sourceId>/<identityKey>             index: normalised nativeIdentity -> accountKey
    m/<sourceId>                           the source's aggregation metadata (SourceMeta)
    s/<sourceId>/<aggregationId>/<offset>[-<n>]  accounts an aggregation saw, chunks per batch
    d/<sourceId>/<aggregationId>/<key>     DELTA deletions waiting for the aggregation to complete
    h/<sourceId>/<identityKey>/<ref>/<id>  provisioning held until its account appears (Held)
    q/<sourceId>/<identityKey>/<id>        PENDING provisioning, until absorbed or withdrawn (Held)
    t/<sourceId>/<accountKey>              race window: attribute -> provisioning completedAt ms
    x/<sourceId>/<identityKey>             notFound: the account is gone as of this instant (ms)

``accountKey`` is ``u:<uuid>`` when the account has a uuid (a GUID as ``{lower-case hex}``,
R1), else ``n:<identityKey>``; keys
longer than :data:`MAX_PART_BYTES` are replaced by a digest so that every store key stays
under LMDB's 511-byte limit.

A stored account is ``VERSION | asOf (int64 ms) | digest (16 bytes) | input digest (16 bytes)
| bytes digest (16 bytes) | account JSON``: the fixed header lets the completion of a FULL
aggregation read ``asOf`` of every account without decoding its JSON, and lets an unchanged
account be recognised by a digest. ``digest`` is over the validated account (what the core
compares); ``input digest`` is over the canonical form of the raw ``account`` object of the
aggregation record the state was last stored from, and ``bytes digest`` over that object's
very bytes as the record held them (both zeros when the state was last written from anything
else, e.g. a provisioning record). The worker's byte path compares the bytes digest without
decoding the account; records whose bytes differ (another key order, say) compare the input
digest after one JSON decode; only then is a record validated (docs/decisions.md, "Fast
path"). Versions 1 (no input digest) and 2 (no bytes digest) are still read: the missing
digests read as zeros, which match no record.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from processor import codec
from processor.core import uuid_key

VERSION = 1
#: Version byte of stored accounts: 1 had no input digest (read as zeros), 2 no bytes digest,
#: 3 has both.
ACCOUNT_VERSION = 3
_HEADER_V1 = struct.Struct(">Bq16s")
_HEADER_V2 = struct.Struct(">Bq16s16s")
_HEADER = struct.Struct(">Bq16s16s16s")
_AS_OF = struct.Struct(">q")
#: Where a stored account (version 3) holds its bytes digest.
_BYTES_DIGEST = slice(_HEADER_V2.size, _HEADER.size)
#: The input digest of state not stored from an aggregation record: matches no input.
NO_INPUT_DIGEST = bytes(16)
#: Longest key part kept verbatim; longer ones are hashed (LMDB keys max out at 511 bytes).
MAX_PART_BYTES = 200
#: Completed aggregation ids remembered per source, to recognise their late records as stale.
DONE_REMEMBERED = 64
#: Running aggregations kept per source and partition; a new one beyond it drops the oldest.
MAX_RUNNING = 16
#: A running aggregation that started this long before the latest one is dropped (data time:
#: an upstream job that died never completes its aggregation).
RUNNING_EXPIRY_MS = 7 * 24 * 3600 * 1000


def _part(text: str) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_PART_BYTES:
        return text
    return "h:" + hashlib.blake2b(raw, digest_size=20).hexdigest()


def account_key(uuid: str | None, identity_key: str) -> str:
    """The state key of an account: its uuid when it has one (as matched, R1's
    :func:`~processor.core.uuid_key`), else its nativeIdentity."""
    return _part(f"u:{uuid_key(uuid)}") if uuid else _part(f"n:{identity_key}")


def k_account(source_id: str, key: str) -> bytes:
    return f"a/{source_id}/{key}".encode()


def k_accounts(source_id: str) -> bytes:
    return f"a/{source_id}/".encode()


def k_index(source_id: str, identity_key: str) -> bytes:
    return f"n/{source_id}/{_part(identity_key)}".encode()


def k_meta(source_id: str) -> bytes:
    return f"m/{source_id}".encode()


def k_seen(source_id: str, aggregation_id: str, offset: int | None = None, chunk: int = 0) -> bytes:
    base = f"s/{source_id}/{_part(aggregation_id)}/"
    if offset is None:
        return base.encode()
    return f"{base}{offset:020d}{f'-{chunk}' if chunk else ''}".encode()


def k_pending_delete(source_id: str, aggregation_id: str, key: str | None = None) -> bytes:
    base = f"d/{source_id}/{_part(aggregation_id)}/"
    return (base if key is None else base + key).encode()


def k_held(source_id: str, identity_key: str | None = None, ref: str = "") -> bytes:
    base = f"h/{source_id}/"
    return (base if identity_key is None else f"{base}{_part(identity_key)}/{ref}").encode()


def k_pending(source_id: str, identity_key: str | None = None, record_id: str = "") -> bytes:
    base = f"q/{source_id}/"
    return (base if identity_key is None else f"{base}{_part(identity_key)}/{record_id}").encode()


def k_shield(source_id: str, key: str | None = None) -> bytes:
    return f"t/{source_id}/{'' if key is None else key}".encode()


def k_gone(source_id: str, identity_key: str | None = None) -> bytes:
    return f"x/{source_id}/{'' if identity_key is None else _part(identity_key)}".encode()


def record_id(obj: Any) -> str:
    """A short hex digest of a record's canonical JSON (names held and pending records)."""
    return hashlib.blake2b(codec.dumps_canonical(obj), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Held:
    """A held or pending provisioning record and its reference instant (ms) for expiry."""

    ref_ms: int
    record: dict[str, Any]

    def encode(self) -> bytes:
        return codec.dumps({"v": VERSION, "ref": self.ref_ms, "record": self.record})

    @staticmethod
    def decode(value: bytes) -> Held:
        obj = codec.loads(value)
        return Held(int(obj["ref"]), dict(obj["record"]))


def digest(account: Any) -> bytes:
    """A 16-byte digest of an account's canonical JSON (key order does not matter)."""
    return canonical_digest(codec.dumps_canonical(account))


def canonical_digest(canonical: bytes) -> bytes:
    """:func:`digest` of an account from its canonical JSON (``codec.dumps_canonical``)."""
    return hashlib.blake2b(canonical, digest_size=16).digest()


def bytes_digest(raw: bytes | memoryview) -> bytes:
    """A 16-byte digest of raw bytes (an ``account`` object as a record held it).

    SHA-256 cut to 16 bytes: on CPUs with SHA extensions it hashes 3 KB in about two thirds
    of blake2b's time (docs/decisions.md, "Fast path").
    """
    return hashlib.sha256(raw).digest()[:16]


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """An account's last state: as of which aggregation start, its digests, its JSON."""

    as_of_ms: int
    digest: bytes
    account_json: bytes
    input_digest: bytes = NO_INPUT_DIGEST
    bytes_digest: bytes = NO_INPUT_DIGEST

    def encode(self) -> bytes:
        header = _HEADER.pack(
            ACCOUNT_VERSION, self.as_of_ms, self.digest, self.input_digest, self.bytes_digest
        )
        return header + self.account_json

    @staticmethod
    def decode(value: bytes) -> StoredAccount:
        version = value[0] if value else 0
        if version == ACCOUNT_VERSION:
            _, as_of, dig, input_dig, bytes_dig = _HEADER.unpack_from(value)
            return StoredAccount(as_of, dig, value[_HEADER.size :], input_dig, bytes_dig)
        if version == 2:
            _, as_of, dig, input_dig = _HEADER_V2.unpack_from(value)
            return StoredAccount(as_of, dig, value[_HEADER_V2.size :], input_dig)
        if version == 1:
            _, as_of, dig = _HEADER_V1.unpack_from(value)
            return StoredAccount(as_of, dig, value[_HEADER_V1.size :])
        raise ValueError(f"unknown stored account version {version}")

    @staticmethod
    def as_of(value: bytes) -> int:
        """``asOf`` of an encoded value, without decoding the rest."""
        return int(_HEADER_V1.unpack_from(value)[1])

    @staticmethod
    def matches_input(value: bytes, as_of_limit_ms: int, input_digest: bytes) -> bool:
        """Whether an encoded value was stored from this very input (canonical form), no
        later than the limit."""
        version = value[0] if value else 0
        if version not in (2, ACCOUNT_VERSION) or len(value) < _HEADER_V2.size:
            return False
        _, as_of, _, stored_input = _HEADER_V2.unpack_from(value)
        return bool(stored_input == input_digest and as_of <= as_of_limit_ms)

    @staticmethod
    def matches_bytes(value: bytes | memoryview, as_of_limit_ms: int, bytes_digest: bytes) -> bool:
        """Whether an encoded value (or a view of one) was stored from these very ``account``
        bytes, no later than the limit."""
        # Once per unchanged record: the digest's bytes are compared where they lie (a value
        # too short to hold them has a shorter slice, which matches no digest).
        return bool(
            value[_BYTES_DIGEST] == bytes_digest
            and value[0] == ACCOUNT_VERSION
            and _AS_OF.unpack_from(value, 1)[0] <= as_of_limit_ms
        )


@dataclass(slots=True)
class AggregationInfo:
    started_ms: int
    mode: str
    #: Accounts this aggregation created (not in the state before it): R10 counts the
    #: previous snapshot, so they are left out of the delete guard's total.
    created: int = 0
    #: Account records of this aggregation that were dead-lettered: a FULL aggregation that
    #: lost records cannot tell which accounts are gone, so it deletes nothing.
    rejected: int = 0


@dataclass(slots=True)
class SourceMeta:
    """Per source and partition: baseline set yet, aggregations running, recently completed."""

    baseline: bool = False
    running: dict[str, AggregationInfo] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        return codec.dumps(
            {
                "v": VERSION,
                "baseline": self.baseline,
                "running": {
                    k: [v.started_ms, v.mode, v.created, v.rejected]
                    for k, v in self.running.items()
                },
                "done": self.done,
            }
        )

    @staticmethod
    def decode(value: bytes) -> SourceMeta:
        obj = codec.loads(value)
        return SourceMeta(
            baseline=bool(obj["baseline"]),
            running={
                k: AggregationInfo(int(v[0]), str(v[1]), *(int(n) for n in v[2:4]))
                for k, v in obj["running"].items()
            },
            done={str(k): int(v) for k, v in obj["done"].items()},
        )

    def copy(self) -> SourceMeta:
        """An independent copy (the running aggregations' counters included)."""
        running = {k: replace(v) for k, v in self.running.items()}
        return SourceMeta(self.baseline, running, dict(self.done))

    def overdue(self) -> list[str]:
        """Running aggregations to drop: started ``RUNNING_EXPIRY_MS`` before the latest one,
        then the oldest beyond ``MAX_RUNNING``."""
        by_start = sorted(self.running, key=lambda i: (self.running[i].started_ms, i))
        if not by_start:
            return []
        latest = self.running[by_start[-1]].started_ms
        old = [i for i in by_start if self.running[i].started_ms < latest - RUNNING_EXPIRY_MS]
        young = by_start[len(old) :]
        return old + young[: max(len(young) - MAX_RUNNING, 0)]

    def latest_start(self) -> int:
        """The latest start (ms) of any running or remembered aggregation; 0 if none."""
        starts = [a.started_ms for a in self.running.values()] + list(self.done.values())
        return max(starts, default=0)

    def finish(self, aggregation_id: str, started_ms: int) -> None:
        """Move an aggregation from running to the remembered completed ones."""
        self.running.pop(aggregation_id, None)
        self.done[aggregation_id] = started_ms
        while len(self.done) > DONE_REMEMBERED:
            self.done.pop(next(iter(self.done)))
