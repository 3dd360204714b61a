"""Per-record JSON decode / encode cost of stdlib json, orjson and msgspec on ~3 KB accounts.

Also the two ways to get a validated ``processor.models.Account`` from bytes, and the cost
of ``processor.codec``'s exact-integer path (orjson plus a digit-run check; the standard
library only for a record holding an integer beyond 64 bits). Prints a markdown table; the
figures and the decisions are in docs/decisions.md (``## JSON codec``, ``## Integers of any
size``).

    python -m bench.codecs --records 2000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/codecs.py``: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.generate import generate
from processor import codec as exact
from processor.models import (
    Account,
    AccountUpdatedEvent,
    EntitlementChange,
    EntitlementRef,
    EventAccount,
    EventIdentity,
    EventManager,
    EventSource,
    EventSourceOwner,
    SingleValueChange,
)

try:
    import msgspec
except ImportError:  # optional: the table says "not installed"
    msgspec = None  # type: ignore[assignment]

Record = dict[str, Any]
#: (operation, codec, microseconds per record, mean encoded bytes per record)
Row = tuple[str, str, float, float]
#: (operation, codec, function, its inputs, the inputs or outputs as JSON bytes, for sizes)
Case = tuple[str, str, Callable[[Any], object], Sequence[Any], Sequence[bytes]]


def _per_record_us(func: Callable[[Any], object], items: Sequence[Any], repeat: int) -> float:
    """Best of ``repeat`` passes over all items (timeit turns the GC off while timing)."""

    def one_pass() -> None:
        for item in items:
            func(item)

    best = min(timeit.repeat(one_pass, number=1, repeat=repeat))
    return best / len(items) * 1e6


def _account_struct() -> Any:
    """A msgspec Struct shaped like ``Account``: typed decoding in one step, for comparison."""
    assert msgspec is not None
    scalar = str | bool | int | float | None
    optional = str | None
    manager = msgspec.defstruct(
        "Manager", [("id", optional, None), ("name", optional, None), ("email", optional, "")]
    )
    identity = msgspec.defstruct(
        "Identity",
        [(field, optional, None) for field in ("id", "name", "alias")]
        + [("email", optional, ""), ("manager", manager | None, None)],
    )
    return msgspec.defstruct(
        "AccountStruct",
        [("nativeIdentity", str), ("attributes", dict[str, scalar | list[scalar]])]
        + [(field, optional, None) for field in ("id", "uuid", "name")]
        + [(field, bool | None, None) for field in ("correlated", "disabled", "locked")]
        + [("identity", identity | None, None)],
    )


def _sample_event(account: dict[str, Any]) -> AccountUpdatedEvent:
    """An ACCOUNT_UPDATED event of typical size: a title change and ten groups added."""
    refs = [
        EntitlementRef(id=f"{n:032x}", name=dn[3 : dn.index(",")], value=dn, owner=None)
        for n, dn in enumerate(account["attributes"]["memberOf"][:10])
    ]
    owner = EventSourceOwner(id="2c9180867a7c46d0017a7ca099d50531", name="Aaron Andrew", email="")
    return AccountUpdatedEvent(
        accountChangeTypes=["ATTRIBUTES_CHANGED", "ENTITLEMENTS_ADDED"],
        identity=EventIdentity(
            id=account["id"],
            name=account["name"],
            alias=account["name"],
            email="",
            manager=EventManager(id=account["id"], name="Martena Heath", email=""),
        ),
        source=EventSource(
            id="2c91808a78efc63e0178fb8624b248c5",
            name="Active Directory",
            alias=None,
            owner=owner,
            governanceGroup=None,
        ),
        account=EventAccount(
            id=account["id"],
            name=account["name"],
            uuid=account["uuid"],
            correlated=True,
            nativeIdentity=account["nativeIdentity"],
        ),
        singleValueAttributeChanges=[SingleValueChange(name="title", oldValue="A", newValue="B")],
        multiValueAttributeChanges=[],
        entitlementChanges=[EntitlementChange(attributeName="memberOf", added=refs, removed=[])],
        id=f"{0:064x}",
    )


def _with_big_integer(obj: Record) -> Record:
    """The record with one attribute holding an integer beyond 64 bits."""
    return {**obj, "attributes": {**obj["attributes"], "msDS-BigCounter": 2**64 + 1}}


def _exact_cases(objects: list[Record], lines: list[bytes]) -> list[Case]:
    """``processor.codec`` next to plain orjson and the stdlib, on ordinary records and on
    the same records each holding one integer beyond 64 bits."""
    big = [_with_big_integer(obj) for obj in objects]
    big_lines = [exact.dumps(obj) for obj in big]
    return [
        ("decode exact", "orjson.loads (rounds big integers)", orjson.loads, lines, lines),
        ("decode exact", "codec.loads, no long digit run", exact.loads, lines, lines),
        ("decode exact", "codec.loads, one big integer", exact.loads, big_lines, big_lines),
        ("decode exact", "json.loads, one big integer", json.loads, big_lines, big_lines),
        ("encode exact", "orjson.dumps (refuses big integers)", orjson.dumps, objects, lines),
        ("encode exact", "codec.dumps, no big integer", exact.dumps, objects, lines),
        ("encode exact", "codec.dumps, one big integer", exact.dumps, big, big_lines),
    ]


def _cases(objects: list[Record], lines: list[bytes]) -> list[Case]:
    """What to time, grouped by operation; the first case of a group is its baseline."""
    events = [_sample_event(obj) for obj in objects[:200]]
    event_lines = [e.model_dump_json().encode() for e in events]
    cases: list[Case] = [
        ("decode", "json.loads", json.loads, lines, lines),
        ("decode", "orjson.loads", orjson.loads, lines, lines),
    ]
    if msgspec is not None:
        decode = msgspec.json.Decoder().decode
        cases.append(("decode", "msgspec.json.Decoder().decode", decode, lines, lines))
    cases += [
        ("encode", "json.dumps().encode()", lambda o: json.dumps(o).encode(), objects, lines),
        ("encode", "orjson.dumps", orjson.dumps, objects, lines),
    ]
    if msgspec is not None:
        encode = msgspec.json.Encoder().encode
        cases.append(("encode", "msgspec.json.Encoder().encode", encode, objects, lines))
    validate_json = Account.model_validate_json
    cases += [
        ("decode+validate", "Account.model_validate_json(bytes)", validate_json, lines, lines),
        (
            "decode+validate",
            "Account.model_validate(orjson.loads(bytes))",
            lambda b: Account.model_validate(orjson.loads(b)),
            lines,
            lines,
        ),
        (
            "decode+validate",
            "Account.model_validate(json.loads(bytes))",
            lambda b: Account.model_validate(json.loads(b)),
            lines,
            lines,
        ),
    ]
    if msgspec is not None:
        typed = msgspec.json.Decoder(_account_struct()).decode
        cases.append(("decode+validate", "msgspec typed Struct", typed, lines, lines))
    cases += [
        ("encode event", "model.model_dump_json()", _dump_json, events, event_lines),
        ("encode event", "orjson.dumps(model.model_dump())", _orjson_dump, events, event_lines),
    ]
    return cases + _exact_cases(objects, lines)


def _dump_json(event: AccountUpdatedEvent) -> str:
    return event.model_dump_json()


def _orjson_dump(event: AccountUpdatedEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def measure(n_records: int, seed: int, repeat: int) -> list[Row]:
    """Time every case on the same generated records."""
    dataset = generate(n_records, 0.0, seed)
    objects = [dataset.account(i) for i in range(n_records)]
    lines = [orjson.dumps(obj) for obj in objects]
    rows: list[Row] = []
    for operation, codec, func, items, encoded in _cases(objects, lines):
        mean_bytes = sum(map(len, encoded)) / len(encoded)
        rows.append((operation, codec, _per_record_us(func, items, repeat), mean_bytes))
    return rows


def render(rows: Sequence[Row]) -> str:
    """A markdown table: us/record, MB/s and the speed-up over the first row of each group."""
    baseline: dict[str, float] = {}
    out = [
        "| operation | codec | B/record | us/record | MB/s | vs first of group |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for operation, codec, us, size in rows:
        base = baseline.setdefault(operation, us)
        mb_s = size / us  # bytes per microsecond is MB/s
        out.append(
            f"| {operation} | `{codec}` | {size:.0f} | {us:.2f} | {mb_s:.0f} | {base / us:.2f}x |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=15, help="passes; the best one counts")
    args = parser.parse_args(argv)
    rows = measure(args.records, args.seed, args.repeat)
    versions = [f"python {platform.python_version()}", f"orjson {orjson.__version__}"]
    versions.append(f"msgspec {msgspec.__version__}" if msgspec else "msgspec not installed")
    print(f"{args.records} account records; {', '.join(versions)}\n")
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
