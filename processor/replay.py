"""``ncd-processor replay DIR``: the streaming worker's pipeline over local snapshot files.

For backfills and for users without Kafka. The records a publisher would put on
``ncd.aggregations`` are made from files and decided by the worker's own
:class:`~processor.worker.partition.PartitionProcessor` against one LMDB store in a local
state directory, so state persists between runs: replaying a directory again, with new
snapshot files added, replays only the new ones (an incremental backfill).

The directory::

    DIR/source.json              the source descriptor (docs/records.md), required
    DIR/catalog.jsonl            entitlement catalog entries (1.3), optional
    DIR/provisioning.jsonl       provisioning records (1.4), optional
    DIR/aggregations/*.jsonl     snapshots (1.2 account records), replayed in name order

Each snapshot file is one COMPLETED FULL aggregation, wrapped in ``aggregation.started`` /
``aggregation.completed`` records; its aggregation id is the file stem (so a file already
replayed is recognised and skipped). Its ``startedAt`` is the UTC instant the stem starts
with, in ISO 8601 basic format (``20261121T120000Z-anything.jsonl``), else the file's
modification time; a file whose instant is not after the previous file's is taken as 1 ms
after it, so name order always wins. The first aggregation of a fresh state directory is the
baseline and emits nothing. A provisioning record (R15) of the source is applied to the
stored state just before the first aggregation that started at or after its ``completedAt``
(required here: it places the record between snapshots); records that completed before the
state's last replayed aggregation started are already reflected in it and are skipped, and
records of other sources are ignored.

Everything is checked before anything is replayed: bad input raises
:class:`~processor.errors.FileInputError` (``FILE:LINE: reason``), writes no events and
leaves the state untouched. Each record is decided as the worker decides it
(:func:`~processor.worker.decision.decide_record`): one the worker would dead-letter (its
decision failed) stops the replay with ``FILE:LINE`` and the worker's reason. Events are
written as JSON Lines, batch by batch, each batch before its state is stored (the store
writes it while the next batch is decided): a killed run, run again, may repeat the last two
batches' events (with the same deterministic ids), never lose one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from processor import codec
from processor.core import SourcePolicy, uuid_key
from processor.errors import FileInputError, InputError
from processor.files import iter_lines, numbered_lines, private_dir, read_catalog, read_document
from processor.models import (
    Account,
    CatalogEntry,
    ProvisioningRecord,
    SourceDescriptor,
    epoch_ms,
)
from processor.progress import ProgressBar
from processor.state import BatchOverlay, LmdbStoreFactory, StateStore
from processor.worker.decision import decide_record
from processor.worker.partition import Outcome, PartitionProcessor, Verdict
from processor.worker.registry import SourceRegistry
from processor.worker.state import SourceMeta, k_meta

#: Name of the replay's store under the state directory (``STATE_DIR/replay-0``).
STORE_NAME = "replay"
#: Records decided per overlay and store commit: the worker's default batch (bounded memory).
BATCH_RECORDS = 500

SOURCE_FILE = "source.json"
CATALOG_FILE = "catalog.jsonl"
PROVISIONING_FILE = "provisioning.jsonl"
AGGREGATIONS_DIR = "aggregations"

_STEM_INSTANT = re.compile(r"^(\d{8}T\d{6}(?:\.\d{1,6})?Z)")

#: Makes a progress bar: (total bytes, label) -> bar.
BarFactory = Callable[[int, str], ProgressBar]


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """One aggregation to replay."""

    path: Path
    aggregation_id: str
    started_ms: int
    size: int

    @property
    def started_at(self) -> str:
        moment = datetime.fromtimestamp(self.started_ms / 1000, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class TimedProvisioning:
    completed_ms: int
    path: Path
    line: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ReplayInput:
    """A checked replay directory."""

    source: SourceDescriptor
    catalog: list[CatalogEntry]
    provisioning: list[TimedProvisioning]
    snapshots: list[SnapshotFile]


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did (counts only)."""

    replayed: int = 0
    skipped: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    deletes_suppressed: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "aggregations_replayed": self.replayed,
            "aggregations_skipped": self.skipped,
            "verdicts": dict(self.verdicts),
            "events": dict(self.events),
            "deletes_suppressed": self.deletes_suppressed,
        }


# ---------------------------------------------------------------------- reading DIR


def read_replay_dir(directory: Path, check_bar: BarFactory | None = None) -> ReplayInput:
    """Read and check everything in ``directory``; :class:`FileInputError` on bad input."""
    source = read_document(directory / SOURCE_FILE, SourceDescriptor, "source descriptor")
    catalog = _catalog(directory / CATALOG_FILE, source.id)
    provisioning = _provisioning(directory / PROVISIONING_FILE, source.id)
    snapshots = _snapshot_files(directory / AGGREGATIONS_DIR)
    policy = SourcePolicy.from_source(source)
    total = sum(s.size for s in snapshots)
    with (check_bar or _no_bar)(total, "check") as bar:
        for snapshot in snapshots:
            _check_snapshot(snapshot.path, policy, bar)
    return ReplayInput(source, catalog, provisioning, snapshots)


def _catalog(path: Path, source_id: str) -> list[CatalogEntry]:
    return read_catalog(path, source_id) if path.exists() else []


def _provisioning(path: Path, source_id: str) -> list[TimedProvisioning]:
    if not path.exists():
        return []
    records = []
    for located in iter_lines(path, ProvisioningRecord, "provisioning record"):
        record = located.record
        if record.sourceId != source_id:
            continue
        if record.completedAt is None:
            raise FileInputError(
                str(path), located.line, "replay needs completedAt to place the record"
            )
        completed = epoch_ms(record.completedAt)
        value = codec.dumps(record.model_dump(mode="json", exclude_none=True))
        records.append(TimedProvisioning(completed, path, located.line, value))
    records.sort(key=lambda r: (r.completed_ms, r.line))
    return records


def _snapshot_files(directory: Path) -> list[SnapshotFile]:
    if not directory.is_dir():
        raise FileInputError(str(directory), 1, "no such directory of snapshot files")
    snapshots: list[SnapshotFile] = []
    previous_ms: int | None = None
    for path in sorted(directory.glob("*.jsonl"), key=lambda p: p.name):
        try:
            stat = path.stat()
        except OSError as exc:
            raise FileInputError(str(path), 1, f"cannot read file: {exc.strerror}") from exc
        match = _STEM_INSTANT.match(path.stem)
        started = _instant_ms(match.group(1)) if match else None
        if started is None:
            started = stat.st_mtime_ns // 1_000_000
        if previous_ms is not None and started <= previous_ms:
            started = previous_ms + 1
        previous_ms = started
        snapshots.append(SnapshotFile(path, path.stem, started, stat.st_size))
    return snapshots


def _instant_ms(text: str) -> int | None:
    """Milliseconds since the epoch of a file name's ISO 8601 basic-format instant (a UTC
    instant, by :data:`_STEM_INSTANT`), else ``None``."""
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return epoch_ms(moment)


def _check_snapshot(path: Path, policy: SourcePolicy, bar: ProgressBar) -> None:
    """Every line an account record; no uuid or nativeIdentity twice (as ``diff`` checks)."""
    uuids: dict[str, int] = {}
    identities: dict[str, int] = {}
    for number, raw in _lines(path, bar):
        try:
            account = codec.validate(Account, codec.loads(raw), "account record")
        except InputError as exc:
            raise FileInputError(str(path), number, exc.reason) from exc
        for what, seen, key in (
            ("uuid", uuids, uuid_key(account.uuid) if account.uuid else None),
            ("nativeIdentity", identities, policy.identity_key(account.nativeIdentity)),
        ):
            if key is None:
                continue
            first = seen.setdefault(key, number)
            if first != number:
                reason = f"duplicate {what} in the snapshot (first at line {first})"
                raise FileInputError(str(path), number, reason)


def _lines(path: Path, bar: ProgressBar) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped line) of each non-blank line; advances ``bar`` by bytes."""
    return numbered_lines(path, bar.update)


def _no_bar(_total: int, _label: str) -> ProgressBar:
    return ProgressBar(None)


# ---------------------------------------------------------------------- replaying


def replay(
    inputs: ReplayInput,
    state_dir: Path,
    out: BinaryIO,
    *,
    bar: BarFactory | None = None,
    warn: Callable[[str], None] = lambda _message: None,
) -> ReplaySummary:
    """Replay checked inputs against the store in ``state_dir``; events go to ``out``."""
    private_dir(state_dir)
    store = LmdbStoreFactory(state_dir, STORE_NAME).open(0)
    try:
        return _Replayer(inputs, store, out, warn).run(bar or _no_bar)
    finally:
        store.close()


class _Replayer:
    def __init__(
        self, inputs: ReplayInput, store: StateStore, out: BinaryIO, warn: Callable[[str], None]
    ) -> None:
        registry = SourceRegistry()
        registry.put_source(inputs.source)
        for entry in inputs.catalog:
            registry.catalog(inputs.source.id).put(entry)
        self._inputs = inputs
        self._store = store
        self._out = out
        self._warn = warn
        self._processor = PartitionProcessor(registry)
        self.summary = ReplaySummary()

    def run(self, bar_factory: BarFactory) -> ReplaySummary:
        source_id = self._inputs.source.id
        raw_meta = self._store.get(k_meta(source_id))
        meta = SourceMeta() if raw_meta is None else SourceMeta.decode(raw_meta)
        last_ms = max(meta.done.values(), default=None)
        pending = [
            p for p in self._inputs.provisioning if last_ms is None or p.completed_ms > last_ms
        ]
        total = sum(s.size for s in self._inputs.snapshots)
        with bar_factory(total, "replay") as bar:
            for snapshot in self._inputs.snapshots:
                due = [p for p in pending if p.completed_ms <= snapshot.started_ms]
                pending = pending[len(due) :]
                self._provision(due)
                self._aggregation(snapshot, bar)
        return self.summary

    def _provision(self, records: list[TimedProvisioning]) -> None:
        for start in range(0, len(records), BATCH_RECORDS):
            chunk = records[start : start + BATCH_RECORDS]
            batch = [(p.path, p.line, p.value, True) for p in chunk]
            self._batch(batch, 0)

    def _aggregation(self, snapshot: SnapshotFile, bar: ProgressBar) -> None:
        source_id = self._inputs.source.id
        base = {"sourceId": source_id, "aggregationId": snapshot.aggregation_id}
        started = codec.dumps(
            {
                "type": "aggregation.started",
                **base,
                "startedAt": snapshot.started_at,
                "mode": "FULL",
            }
        )
        outcomes = self._batch([(snapshot.path, 1, started, False)], 0)
        if outcomes[0].verdict == Verdict.STALE:  # replayed before: skip the whole file
            bar.update(snapshot.size)
            self.summary.skipped += 1
            return
        prefix = codec.dumps({"type": "account", **base, "deleted": False})[:-1] + b',"account":'
        batch: list[tuple[Path, int, bytes, bool]] = []
        count = 0
        for number, line in _lines(snapshot.path, bar):
            batch.append((snapshot.path, number, prefix + line + b"}", False))
            count += 1
            if len(batch) >= BATCH_RECORDS:
                self._batch(batch, count - len(batch) + 1)
                batch = []
        if batch:
            self._batch(batch, count - len(batch) + 1)
        completed: dict[str, object] = {"type": "aggregation.completed", **base}
        completed |= {"status": "COMPLETED", "accountCount": count}
        self._batch([(snapshot.path, 1, codec.dumps(completed), False)], count + 1)
        self.summary.replayed += 1

    def _batch(self, records: list[tuple[Path, int, bytes, bool]], batch_id: int) -> list[Outcome]:
        """Decide records in one overlay as the worker does (:func:`decide_record`, the
        worker's per-record path); write their events, then store the overlay."""
        overlay = BatchOverlay(self._store)
        self._processor.begin_batch()
        outcomes = []
        data = bytearray()
        for path, line, value, is_provisioning in records:
            outcome, lines = decide_record(
                self._processor,
                value,
                overlay,
                provisioning=is_provisioning,
                check_key=False,  # records made here from one source's files: no key
                outputs=_event_lines,
            )
            if outcome.verdict == Verdict.DEAD_LETTERED:
                raise FileInputError(str(path), line, outcome.reason or "invalid record")
            outcomes.append(outcome)
            data += b"".join(lines)
        # Seen-account chunks are named by the batch's first record number in the file.
        self._processor.end_batch(overlay, batch_id)
        for outcome in outcomes:
            self._count(outcome, records[0][0])
        if data:
            self._out.write(data)
            self._out.flush()
        self._store.apply(overlay.writes, None)
        return outcomes

    def _count(self, outcome: Outcome, path: Path) -> None:
        """Add a decision to the summary; warn when the delete guard held deletions back."""
        self.summary.verdicts[outcome.verdict.value] += 1
        for event in outcome.events:
            self.summary.events[event.operation.value] += 1
        if outcome.deletes_suppressed:
            self.summary.deletes_suppressed += outcome.deletes_suppressed
            if outcome.guard is not None:
                self._warn(f"{outcome.guard.message()} ({path.name})")
            else:
                self._warn(
                    f"delete guard: {outcome.deletes_suppressed} deletions held back: "
                    f"{outcome.reason} ({path.name})"
                )


def _event_lines(outcome: Outcome) -> list[bytes]:
    """A decision's events as JSON Lines (the values the worker writes to ``ncd.events``)."""
    return [codec.dumps(event.body) + b"\n" for event in outcome.events]
