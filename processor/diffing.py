"""The ``diff`` command's files: two snapshot files in, the events as JSON Lines out.

Memory is bounded by the snapshots' keys, not their accounts: a first pass reads and checks
every line of both snapshots and keeps, per account, only what R1 matches by
(:class:`~processor.core.AccountKeys`), where its line is and the SHA-256 of its bytes. A
current line whose bytes are a previous line's was checked with it and is not decoded again.
The core then plans the diff over those keys (:func:`~processor.core.plan_diff`), and each
account that may have an event is read again from its line
(:func:`~processor.core.diff_events`); a pair whose two lines hold the same bytes (and no
provisioning record) has none, and is not read again. Everything is read and checked before
anything is written, so bad input gives ``FILE:LINE: reason`` and no events.
"""

from __future__ import annotations

import gc
import hashlib
import io
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from processor import codec
from processor.core import (
    AccountKeys,
    DiffPlan,
    DuplicateAccountError,
    EntitlementCatalog,
    SourcePolicy,
    account_keys,
    diff_events,
    plan_diff,
)
from processor.errors import FileInputError, InputError
from processor.files import (
    open_rereadable,
    placed_lines,
    read_at,
    read_catalog,
    read_document,
    read_lines,
)
from processor.models import Account, ProvisioningRecord, SourceDescriptor

#: Events up to this size are gathered in memory before they are written, larger output
#: in a temporary file: nothing is written until every event is known.
SPOOL_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class SnapshotIndex:
    """One snapshot file as ``diff`` keeps it: the file, open (``path`` names it in errors),
    and per account (in file order) its keys, its line number, where its line starts and
    how long it is, and the SHA-256 of the line."""

    path: Path
    handle: BinaryIO
    keys: list[AccountKeys] = field(default_factory=list)
    lines: array[int] = field(default_factory=lambda: array("q"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    digests: list[bytes] = field(default_factory=list)

    def add(self, number: int, offset: int, size: int, digest: bytes, keys: AccountKeys) -> None:
        """Keep what ``diff`` needs of one account read from line ``number``."""
        self.keys.append(keys)
        self.lines.append(number)
        self.offsets.append(offset)
        self.sizes.append(size)
        self.digests.append(digest)

    def by_digest(self) -> dict[bytes, int]:
        """The position of the (first) account whose line has each digest."""
        found: dict[bytes, int] = {}
        for position, digest in enumerate(self.digests):
            found.setdefault(digest, position)
        return found

    def read(self, position: int) -> Account:
        """The account at ``position``, read again from its line."""
        raw = read_at(self.handle, self.offsets[position], self.sizes[position])
        return parse_account(self.path, self.lines[position], raw)

    def error(self, position: int, reason: str) -> FileInputError:
        """``FILE:LINE: reason`` for the account at ``position``."""
        return FileInputError(str(self.path), self.lines[position], reason)


def parse_account(path: Path, number: int, raw: bytes) -> Account:
    """The account on line ``number``; ``FILE:LINE: reason`` when it is not one."""
    try:
        return codec.validate(Account, codec.loads(raw.strip()), "account record")
    except InputError as exc:
        raise FileInputError(str(path), number, exc.reason) from exc


def index_snapshot(
    path: Path, handle: BinaryIO, known: SnapshotIndex | None = None
) -> SnapshotIndex:
    """Read and check every account of a snapshot file (open as ``handle``, which must allow
    :func:`~processor.files.read_at`), keeping only its index.

    A line whose bytes are those of a line of ``known`` (the previous snapshot, already
    checked) is the same account: its keys are taken from there, without decoding it again.
    """
    index = SnapshotIndex(path, handle)
    seen = {} if known is None else known.by_digest()
    for number, offset, raw in placed_lines(handle):
        digest = hashlib.sha256(raw.strip()).digest()
        position = seen.get(digest)
        if position is not None and known is not None:
            keys = known.keys[position]
        else:
            keys = account_keys(parse_account(path, number, raw))
        index.add(number, offset, len(raw), digest, keys)
    return index


@dataclass(frozen=True, slots=True)
class _Inputs:
    """The checked inputs of a diff and its plan."""

    policy: SourcePolicy
    previous: SnapshotIndex
    current: SnapshotIndex
    catalog: EntitlementCatalog
    plan: DiffPlan


@dataclass(frozen=True, slots=True)
class DiffFiles:
    """The files of one diff: a source descriptor, two snapshots, and optionally a catalog
    and provisioning records."""

    source: Path
    previous: Path
    current: Path
    catalog: Path | None = None
    provisioning: Path | None = None


def _read_inputs(files: DiffFiles, stack: ExitStack) -> _Inputs:
    """Read and check every input, in the order their errors are reported, and plan; the
    snapshots stay open (in ``stack``) to be read again."""
    source = read_document(files.source, SourceDescriptor, "source descriptor")
    handle = stack.enter_context(open_rereadable(files.previous))
    previous = index_snapshot(files.previous, handle)
    handle = stack.enter_context(open_rereadable(files.current))
    current = index_snapshot(files.current, handle, known=previous)
    catalog = EntitlementCatalog([] if files.catalog is None else read_catalog(files.catalog))
    provisioning = (
        []
        if files.provisioning is None
        else [
            x.record
            for x in read_lines(files.provisioning, ProvisioningRecord, "provisioning record")
        ]
    )
    policy = SourcePolicy.from_source(source)
    try:
        plan = plan_diff(policy, previous.keys, current.keys, provisioning)
    except DuplicateAccountError as exc:
        index = previous if exc.side == "previous" else current
        first = index.lines[exc.first_index]
        raise index.error(exc.index, f"{exc.reason} (first at line {first})") from exc
    return _Inputs(policy, previous, current, catalog, plan)


def write_diff(
    out: BinaryIO, files: DiffFiles, warn: Callable[[str], None] = lambda _message: None
) -> None:
    """Read the inputs, diff them, and write the events to ``out`` as JSON Lines.

    Everything is read and checked before anything is written, so bad input yields an
    error and no events. ``warn`` is told, in one line, when the delete guard (R10) held
    deletions back. The cyclic garbage collector is paused meanwhile: the index is
    hundreds of thousands of small objects it would rescan again and again, and the diff
    creates no reference cycles worth collecting.
    """
    with _gc_paused(), ExitStack() as stack:
        got = _read_inputs(files, stack)
        previous, current = got.previous, got.current

        def same(i: int, j: int) -> bool:
            return previous.digests[i] == current.digests[j]

        spool = stack.enter_context(tempfile.SpooledTemporaryFile(SPOOL_BYTES))
        events = diff_events(got.policy, got.plan, previous.read, current.read, got.catalog, same)
        for event in events:
            spool.write(codec.dumps(event.body) + b"\n")
        if got.plan.guard is not None:
            warn(got.plan.guard.message())
        spool.seek(0)
        shutil.copyfileobj(spool, out)


def run_diff(
    *,
    source_path: Path,
    previous_path: Path,
    current_path: Path,
    catalog_path: Path | None = None,
    provisioning_path: Path | None = None,
) -> bytes:
    """:func:`write_diff` into bytes (for tests and small inputs)."""
    out = io.BytesIO()
    files = DiffFiles(source_path, previous_path, current_path, catalog_path, provisioning_path)
    write_diff(out, files)
    return out.getvalue()


@contextmanager
def _gc_paused() -> Iterator[None]:
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
