"""The byte path's view of an account record: its routing fields and its ``account`` bytes.

msgspec reads the envelope of an aggregation record (type, source, aggregation, deleted) and
keeps the ``account`` object as the very bytes the record holds (``msgspec.Raw``), so the
worker can recognise an account whose bytes repeat without building it as Python objects;
a second pass over those bytes reads only the two fields its state key needs. Anything
this view does not understand gives ``None`` and goes the usual way (orjson, then the
models), which decides and reports exactly as before (docs/decisions.md, "Fast path").

msgspec skips what it does not need without checking it as strictly as orjson (a string
that is not UTF-8, a number too large for a double), so the envelope admits no other field
than those it reads: a record with more takes the usual path. The ``account`` bytes need no
such care: the byte path only accepts bytes whose digest the state holds, bytes that went
the usual path once.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import msgspec

from processor.worker.state import bytes_digest


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["account"]
    sourceId: str
    aggregationId: str
    account: msgspec.Raw
    deleted: bool = False


class _Identity(msgspec.Struct):
    nativeIdentity: str
    uuid: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_IDENTITY = msgspec.json.Decoder(_Identity)


class AccountBytes(NamedTuple):
    """An account record (not a deletion) as the byte path sees it."""

    source_id: str
    aggregation_id: str
    native_identity: str
    uuid: str | None
    #: :func:`~processor.worker.state.bytes_digest` of the ``account`` object's bytes.
    digest: bytes


def account_bytes(value: bytes) -> AccountBytes | None:
    """The byte path's view of ``value``; ``None`` for anything but a well-formed account
    record that is not a deletion (other records, malformed ones: the usual path decides)."""
    try:
        envelope = _ENVELOPE.decode(value)
        if envelope.deleted:
            return None
        identity = _IDENTITY.decode(envelope.account)
    # Malformed (DecodeError), nested deeper than msgspec goes (RecursionError), a known
    # string that is not UTF-8 (UnicodeDecodeError, a ValueError): the usual path says why.
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    return AccountBytes(
        envelope.sourceId,
        envelope.aggregationId,
        identity.nativeIdentity,
        identity.uuid,
        bytes_digest(memoryview(envelope.account)),
    )
