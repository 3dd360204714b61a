"""The byte path's views of an account record: its routing fields and its ``account`` bytes.

Two views, quickest first; neither builds the account as Python objects:

- :func:`compact_account`: a record laid out as the publisher writes it (compact JSON,
  ``{"type":"account","sourceId":"..","aggregationId":"..","account":{..}}``, perhaps with
  ``"deleted":false`` after the account) is read without a JSON decoder: its routing fields
  by one regular expression, its ``account`` bytes as everything up to the record's end,
  and a hint of its uuid by a plain search. Nothing of this is known to be right (another
    member after the account, a nested ``uuid`` before the account's own, are not seen): it
  is only used to find a stored account whose bytes digest is the digest of those very
  bytes, which proves it (see
  :meth:`~processor.worker.account_flow.AccountFlow.unchanged_compact`).
- :func:`account_bytes`: msgspec reads the envelope (type, source, aggregation, deleted) and
  keeps the ``account`` object as the very bytes the record holds (``msgspec.Raw``); a second
  pass over those bytes reads the two fields its state key needs (:func:`account_identity`).

Anything these views do not understand gives ``None`` and goes the usual way (orjson, then
the models), which decides and reports exactly as before (docs/decisions.md, "Fast path").

msgspec skips what it does not need without checking it as strictly as orjson (a string
that is not UTF-8, a number too large for a double), so the envelope admits no other field
than those it reads: a record with more takes the usual path. The ``account`` bytes need no
such care: the byte path only accepts bytes whose digest the state holds, bytes that went
the usual path once.
"""

from __future__ import annotations

import re
from typing import Literal

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
#: What msgspec raises on bytes it cannot read: malformed (DecodeError), nested deeper than
#: it goes (RecursionError), a known string that is not UTF-8 (UnicodeDecodeError, a
#: ValueError). The usual path says why.
_UNREADABLE = (msgspec.DecodeError, RecursionError, ValueError)

#: The head of a compact account record, up to the ``{`` that opens its account. The two
#: strings hold no quote, backslash or control character: their bytes are their text (if
#: UTF-8), as a JSON decoder would read them.
COMPACT_HEAD = re.compile(
    rb'\{"type":"account","sourceId":"([^"\\\x00-\x1f]*)",'
    rb'"aggregationId":"([^"\\\x00-\x1f]*)","account":\{'
)
#: How the publisher writes a uuid: its first occurrence in the account is most likely the
#: account's own (an earlier nested one makes the hint wrong, which the digest tells).
_UUID_MEMBER = b'"uuid":"'
_CLOSE = ord("}")
#: How the publisher ends an account record that is no deletion.
NOT_DELETED = b',"deleted":false}'


class CompactAccount(msgspec.Struct, frozen=True, gc=False):
    """A compact account record as :func:`compact_account` reads it, unverified."""

    source_id: str
    aggregation_id: str
    #: :func:`~processor.worker.state.bytes_digest` of the bytes from the account's ``{`` to
    #: the record's end (its last ``}``, or ``,"deleted":false}``): the account's bytes, if
    #: nothing else follows it.
    digest: bytes
    #: The text of the account's first ``"uuid":"..."`` member (no escapes).
    uuid_hint: str
    #: Where the digested bytes lie in the record.
    start: int
    stop: int


def compact_span(value: bytes, start: int) -> tuple[int, bytes] | None:
    """Where the account of a compact record whose account opens at ``start`` stops (the end
    of its bytes), and the bytes of its first ``"uuid":"..."`` member; ``None`` when the
    record does not end as the publisher ends one, or shows no such member. Shared by
    :func:`compact_account` and the runs of :mod:`~processor.worker.unchanged`."""
    if value.endswith(NOT_DELETED):
        stop = len(value) - len(NOT_DELETED)
    elif value[-1] == _CLOSE:
        stop = len(value) - 1
    else:
        return None
    at = value.find(_UUID_MEMBER, start) + len(_UUID_MEMBER)
    end = value.find(b'"', at)
    if at < len(_UUID_MEMBER) or end < 0:
        return None
    return stop, value[at:end]


def compact_account(value: bytes) -> CompactAccount | None:
    """The quick, unverified view of a compact account record; ``None`` when ``value`` is not
    laid out so, or shows no plain ``"uuid":"..."`` member."""
    head = COMPACT_HEAD.match(value)
    if head is None:
        return None
    start = head.end() - 1
    span = compact_span(value, start)
    if span is None:
        return None
    stop, uuid_bytes = span
    try:
        source, aggregation = head.group(1, 2)
        source_id, aggregation_id = source.decode(), aggregation.decode()
        uuid = uuid_bytes.decode()
    except UnicodeDecodeError:
        return None
    if "\\" in uuid:  # an escape: its text is not its bytes
        return None
    digest = bytes_digest(memoryview(value)[start:stop])
    return CompactAccount(source_id, aggregation_id, digest, uuid, start, stop)


class AccountBytes(msgspec.Struct, frozen=True, gc=False):
    """An account record (not a deletion) as the byte path sees it."""

    source_id: str
    aggregation_id: str
    #: The ``account`` object's bytes, as the record holds them.
    account: msgspec.Raw


def account_bytes(value: bytes) -> AccountBytes | None:
    """The byte path's view of ``value``; ``None`` for anything but a well-formed account
    record that is not a deletion (other records, malformed ones: the usual path decides)."""
    try:
        envelope = _ENVELOPE.decode(value)
    except _UNREADABLE:
        return None
    if envelope.deleted:
        return None
    return AccountBytes(envelope.sourceId, envelope.aggregationId, envelope.account)


def account_digest(
    seen: AccountBytes, value: bytes, known: tuple[int, int, bytes] | None = None
) -> bytes:
    """:func:`~processor.worker.state.bytes_digest` of the ``account`` bytes of ``value``.
    ``known``: (start, stop, digest) of bytes of ``value`` already hashed; when they are the
    ``account`` bytes (compared, not assumed), their digest is not computed again."""
    account = seen.account
    if (
        known is not None
        and len(account) == known[1] - known[0]
        and value.startswith(bytes(account), known[0])
    ):
        return known[2]
    return bytes_digest(memoryview(account))


def account_identity(seen: AccountBytes) -> tuple[str, str | None] | None:
    """``(nativeIdentity, uuid)`` read from the ``account`` bytes; ``None`` if unreadable."""
    try:
        identity = _IDENTITY.decode(seen.account)
    except _UNREADABLE:
        return None
    return identity.nativeIdentity, identity.uuid
