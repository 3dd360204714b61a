"""Reading contract records from local files, with ``FILE:LINE: reason`` errors; and the
owner-only directories and files the worker and ``replay`` write.

A snapshot, catalog or provisioning file is JSON Lines (blank lines are skipped); a source
descriptor is one JSON document. Every failure is a :class:`FileInputError` naming the
file and the 1-based line.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from pydantic import BaseModel

from processor import codec
from processor.core import catalog_key
from processor.errors import FileInputError, InputError
from processor.models import CatalogEntry

M = TypeVar("M", bound=BaseModel)

#: Account attributes are personal data: what the worker keeps is for its user alone.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if missing; make it owner-only (0700) if ours.

    The mode is set explicitly, so the umask does not matter. A directory of another owner
    (a mounted volume's root, say) is left as it is: what we create inside it is private.
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(PRIVATE_DIR_MODE)
    return path


def open_private(path: Path) -> BinaryIO:
    """Open ``path`` for appending bytes; a new file is owner-only (0600) whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "ab")


@dataclass(frozen=True, slots=True)
class Located(Generic[M]):
    """A record and the line it came from."""

    line: int
    record: M


def read_document(path: Path, model: type[M], what: str) -> M:
    """Read a file holding one JSON document."""
    data = _read_bytes(path)
    try:
        obj = codec.loads(data)
    except InputError as exc:
        line = _json_error_line(exc)
        raise FileInputError(str(path), line, exc.reason) from exc
    try:
        return codec.validate(model, obj, what)
    except InputError as exc:
        raise FileInputError(str(path), 1, exc.reason) from exc


def numbered_lines(
    path: Path, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, stripped bytes) of each non-blank line of a file.

    ``on_bytes`` is told the size of every line read (blank ones too): a progress bar.
    """
    with open_input(path) as handle:
        for number, _offset, raw in placed_lines(handle, on_bytes):
            yield number, raw.strip()


def placed_lines(
    handle: BinaryIO, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line number, byte offset, bytes as read) of each non-blank line of an open
    file, from its start: :func:`read_at` reads such a line again."""
    offset = 0
    for number, raw in enumerate(handle, start=1):
        if on_bytes is not None:
            on_bytes(len(raw))
        if not raw.isspace():
            yield number, offset, raw
        offset += len(raw)


def open_input(path: Path) -> BinaryIO:
    """Open an input file for reading bytes; a :class:`FileInputError` (line 1) if it cannot."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise FileInputError(str(path), 1, f"cannot read file: {exc.strerror}") from exc


def open_rereadable(path: Path) -> BinaryIO:
    """Open an input file whose lines :func:`read_at` can read again: the file itself when it
    is a regular file, else (a pipe, ``<(zcat ...)``) a private temporary copy of it."""
    handle = open_input(path)
    if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        return handle
    copy = tempfile.TemporaryFile()  # noqa: SIM115 (returned open) owner-only, unlinked already
    with handle:
        try:
            shutil.copyfileobj(handle, copy)
        except OSError as exc:
            copy.close()
            raise FileInputError(str(path), 1, f"cannot read file: {exc.strerror}") from exc
    copy.seek(0)
    return copy


def read_at(handle: BinaryIO, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of an open file (a line :func:`placed_lines` found)."""
    return os.pread(handle.fileno(), size, offset)


def iter_lines(path: Path, model: type[M], what: str) -> Iterator[Located[M]]:
    """Yield each non-blank line of a JSON Lines file as a validated record."""
    for number, raw in numbered_lines(path):
        try:
            record = codec.validate(model, codec.loads(raw), what)
        except InputError as exc:
            raise FileInputError(str(path), number, exc.reason) from exc
        yield Located(number, record)


def read_lines(path: Path, model: type[M], what: str) -> list[Located[M]]:
    """All records of a JSON Lines file (see :func:`iter_lines`)."""
    return list(iter_lines(path, model, what))


def read_catalog(path: Path, source_id: str | None = None) -> list[CatalogEntry]:
    """The entries of a catalog file. An (attribute, value) named twice is bad input at the
    second line (R13: never resolved by line order); so, when ``source_id`` is given, is an
    entry whose ``sourceId`` names another source."""
    entries: list[CatalogEntry] = []
    first_line: dict[tuple[str, str], int] = {}
    for located in iter_lines(path, CatalogEntry, "catalog entry"):
        entry = located.record
        if source_id is not None and entry.sourceId not in (None, source_id):
            raise FileInputError(str(path), located.line, "catalog entry is for another source")
        first = first_line.setdefault(catalog_key(entry.attribute, entry.value), located.line)
        if first != located.line:
            raise FileInputError(
                str(path),
                located.line,
                f"duplicate catalog entry: same attribute and value as line {first} (R13)",
            )
        entries.append(entry)
    return entries


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileInputError(str(path), 1, f"cannot read file: {exc.strerror}") from exc


def _json_error_line(exc: InputError) -> int:
    cause = exc.__cause__
    lineno = getattr(cause, "lineno", None)
    return lineno if isinstance(lineno, int) and lineno > 0 else 1
