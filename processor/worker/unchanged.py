"""Runs of unchanged account records decided in bulk, from their bytes (issue 14).

Most records of an aggregation repeat the account their state was stored from. The
publisher writes an aggregation's records one after the other with the same head
(``{"type":"account","sourceId":"..","aggregationId":"..","account":{``), so a run of them is
decided in one tight loop: the head is read, its source and running aggregation looked up,
once per run; each record then costs a comparison of its head's bytes, a search for its
uuid, the digest of its account bytes and one state read. Nothing is built per record (no
outcome, no outputs, no savepoint: such a record writes nothing), the accounts seen are noted
and the run is counted once.

It is :meth:`~processor.worker.account_flow.AccountFlow.unchanged_compact` (same view of the
record, see :func:`~processor.worker.envelope.compact_account`; same proof: the stored bytes
digest), narrowed to what needs no per-record lookup: a uuid hint in ASCII that is its own R1 key
(as braced lower case GUIDs are), short enough to be a state key as it is, and a record key
that names it. The first record that is anything else (another head, a changed account, a
deletion, a wrong key, a record over the size limit, a provisioning record) ends the run and
goes the usual per-record way, which decides it (and says why) exactly as before; so does a
record whose check raises, within its own failure boundary. When the run ends at a record
whose state it read and found stored from other bytes (or none), it hands what it found on
to that record's decision (:attr:`UnchangedRuns.looked`), which writes nothing before.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from itertools import islice
from typing import NamedTuple, Protocol

from processor.core import uuid_key
from processor.state.overlay import BatchOverlay
from processor.worker.accounts import Looked
from processor.worker.envelope import COMPACT_HEAD, compact_span
from processor.worker.flow import NOT_THE_RECORDS_FAULT, Flow
from processor.worker.state import MAX_PART_BYTES, StoredAccount, bytes_digest, k_account

#: An ASCII uuid up to this many bytes gives a state key ``u:<uuid>`` kept as it is.
_SHORT_ASCII_UUID = MAX_PART_BYTES - 2
_OPEN_BRACE, _BACKSLASH = ord("{"), ord("\\")


class InputRecord(Protocol):
    """What a run reads of an input record."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Run(NamedTuple):
    """What :meth:`UnchangedRuns.run` decided."""

    source_id: str
    #: How many records it decided unchanged. 0: none, but the first is a compact account
    #: record whose state (none under its uuid, or stored from other bytes) says it is not
    #: unchanged: the compact way of ``PartitionProcessor.process`` would find the same.
    decided: int


class UnchangedRuns(Flow):
    """Decides runs of unchanged account records of one partition."""

    #: What the last run found of the record it ended at (``None``: nothing), for that
    #: record's decision, or the next run (from that record, decided as a run of none).
    looked: Looked | None = None

    def run(
        self,
        records: Sequence[InputRecord],
        start: int,
        topic: str,
        state: BatchOverlay,
        max_record_bytes: int | None,
    ) -> Run | None:
        """The run of unchanged account records of ``topic`` (``ncd.aggregations``), of one
        source and aggregation, from ``records[start]`` on, their accounts noted as seen;
        ``None`` when ``records[start]`` is none (and not known to be changed, see
        :attr:`Run.decided`)."""
        ended, self.looked = self.looked, None
        first = records[start]
        value = first.value
        if ended is not None and value is ended.value:
            # The record the last run ended at (its batch wrote nothing since): known.
            self.looked = ended
            return Run(ended.source_id, 0)
        if first.topic != topic or value is None:
            return None
        head = COMPACT_HEAD.match(value)
        if head is None:
            return None
        source, aggregation = head.group(1, 2)
        try:
            source_id, aggregation_id = source.decode(), aggregation.decode()
            if self._registry.policy(source_id) is None:
                return None
            agg = self._memory.meta_of(source_id, state).running.get(aggregation_id)
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception:  # not UTF-8, unreadable metadata: the usual path says why
            return None
        if agg is None:
            return None
        uuids, found = _unchanged(
            records,
            start,
            (topic, source_id),
            value[: head.end()],
            (agg.started_ms, sys.maxsize if max_record_bytes is None else max_record_bytes),
            state,
        )
        # The record it ended at, for that record's decision (or the next run).
        self.looked = found
        if not uuids:
            return None if found is None else Run(source_id, 0)
        # Their state keys "u:<uuid>", made in one decode (a uuid here holds no '"').
        keys = ("u:" + b'"u:'.join(uuids).decode()).split('"')
        self._memory.saw_decided(source_id, aggregation_id, keys)
        return Run(source_id, len(keys))


def _own_key(uuid: bytes) -> bool:
    """Whether an ASCII uuid is its own R1 key (:func:`~processor.core.uuid_key`)."""
    text = uuid.decode()
    return uuid_key(text) == text


def _unchanged(
    records: Sequence[InputRecord],
    start: int,
    where: tuple[str, str],
    head: bytes,
    limits: tuple[int, int],
    state: BatchOverlay,
) -> tuple[list[bytes], Looked | None]:
    """The uuids of the unchanged records from ``records[start]`` on that begin with
    ``head``, up to the first that is not one, and what its state said when it said so.
    ``where``: their topic and source; ``limits``: the aggregation's start and the record
    size limit."""
    topic, source_id = where
    key_prefix, state_prefix = f"{source_id}/".encode(), k_account(source_id, "u:")
    started_ms, max_bytes = limits
    opens = len(head) - 1  # the account's "{"
    # Unchecked: only the head of a value is compared, and one that does not match is read
    # again, checked, before it is handed on (see ``LmdbStateStore.viewer``).
    view, matches = state.viewer(checked=False), StoredAccount.matches_bytes
    uuids: list[bytes] = []
    for record in islice(records, start, None):
        value = record.value
        if (
            record.topic != topic
            or value is None
            or len(value) > max_bytes
            or not value.startswith(head)
        ):
            break
        try:
            span = compact_span(value, opens)
            if span is None:
                break
            stop, uuid = span
            # ASCII without an escape: its text is its bytes; and its own R1 key (braced lower
            # case, as Active Directory sends GUIDs, is, as uuid_key says).
            if not (
                uuid
                and uuid.isascii()
                and _BACKSLASH not in uuid  # (a byte's value: memchr, not a substring search)
                and len(uuid) <= _SHORT_ASCII_UUID
                and record.key == key_prefix + uuid
                and ((uuid[0] == _OPEN_BRACE and uuid.islower()) or _own_key(uuid))
            ):
                break
            state_key = state_prefix + uuid
            raw = view(state_key)  # (a view: compared and dropped)
            digest = bytes_digest(memoryview(value)[opens:stop])
            if raw is None or not matches(raw, started_ms, digest):
                key, kept = "u:" + uuid.decode(), None if raw is None else state.get(state_key)
                return uuids, Looked(value, opens, stop, digest, source_id, key, kept)
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception:  # the usual path decides this record, and says why
            break
        uuids.append(uuid)
    return uuids, None
