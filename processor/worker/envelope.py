"""The byte path's view of an account record: its routing fields and its ``account`` bytes.

msgspec reads the envelope of an aggregation record (type, source, aggregation, deleted) and
keeps the ``account`` object as the very bytes the record holds (``msgspec.Raw``), so the
worker can recognise an account whose bytes repeat without building it as Python objects;
a second pass over those bytes reads only the two fields its state key needs. Anything
this view does not understand gives ``None`` and goes the usual way (orjson, then the
models), which decides and reports exactly as before (docs/decisions.md, "Fast path").
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import msgspec

from processor.worker.state import bytes_digest


class _Envelope(msgspec.Struct):
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
    except (msgspec.DecodeError, RecursionError):  # msgspec nests less deep than orjson
        return None
    return AccountBytes(
        envelope.sourceId,
        envelope.aggregationId,
        identity.nativeIdentity,
        identity.uuid,
        bytes_digest(memoryview(envelope.account)),
    )
