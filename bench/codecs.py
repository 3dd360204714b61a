"""Per-record JSON decode / encode cost of stdlib json, orjson and msgspec on ~3 KB accounts.

Also the two ways to get a validated ``processor.models.Account`` from bytes. Prints a
markdown table; the figures and the decision are in docs/decisions.md (``## JSON codec``).

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
from processor.models import Account

try:
    import msgspec
except ImportError:  # optional: the table says "not installed"
    msgspec = None  # type: ignore[assignment]

Row = tuple[str, str, float]  # (operation, codec, microseconds per record)


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


def measure(n_records: int, seed: int, repeat: int) -> tuple[list[Row], float]:
    """Time every codec on the same generated records; returns rows and mean record size."""
    dataset = generate(n_records, 0.0, seed)
    objects = [dataset.account(i) for i in range(n_records)]
    lines = [orjson.dumps(obj) for obj in objects]
    rows: list[Row] = [
        ("decode", "json.loads", _per_record_us(json.loads, lines, repeat)),
        ("decode", "orjson.loads", _per_record_us(orjson.loads, lines, repeat)),
        (
            "encode",
            "json.dumps().encode()",
            _per_record_us(lambda o: json.dumps(o).encode(), objects, repeat),
        ),
        ("encode", "orjson.dumps", _per_record_us(orjson.dumps, objects, repeat)),
    ]
    if msgspec is not None:
        decoder, encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
        typed = msgspec.json.Decoder(_account_struct())
        rows.insert(
            2,
            (
                "decode",
                "msgspec.json.Decoder().decode",
                _per_record_us(decoder.decode, lines, repeat),
            ),
        )
        rows.append(
            (
                "encode",
                "msgspec.json.Encoder().encode",
                _per_record_us(encoder.encode, objects, repeat),
            )
        )
    rows += [
        (
            "decode+validate",
            "Account.model_validate_json(bytes)",
            _per_record_us(Account.model_validate_json, lines, repeat),
        ),
        (
            "decode+validate",
            "Account.model_validate(orjson.loads(bytes))",
            _per_record_us(lambda b: Account.model_validate(orjson.loads(b)), lines, repeat),
        ),
        (
            "decode+validate",
            "Account.model_validate(json.loads(bytes))",
            _per_record_us(lambda b: Account.model_validate(json.loads(b)), lines, repeat),
        ),
    ]
    if msgspec is not None:
        rows.append(
            ("decode+validate", "msgspec typed Struct", _per_record_us(typed.decode, lines, repeat))
        )
    return rows, sum(map(len, lines)) / len(lines)


def render(rows: Sequence[Row], mean_bytes: float) -> str:
    """A markdown table: us/record, MB/s and the ratio to the first row of each operation."""
    baseline: dict[str, float] = {}
    out = [
        "| operation | codec | us/record | MB/s | vs first of group |",
        "|---|---|---:|---:|---:|",
    ]
    for operation, codec, us in rows:
        base = baseline.setdefault(operation, us)
        mb_s = mean_bytes / us  # bytes per microsecond is MB/s
        out.append(f"| {operation} | `{codec}` | {us:.2f} | {mb_s:.0f} | {base / us:.2f}x |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=15, help="passes; the best one counts")
    args = parser.parse_args(argv)
    rows, mean_bytes = measure(args.records, args.seed, args.repeat)
    versions = [f"python {platform.python_version()}", f"orjson {orjson.__version__}"]
    versions.append(f"msgspec {msgspec.__version__}" if msgspec else "msgspec not installed")
    print(f"{args.records} records, {mean_bytes:.0f} B mean; {', '.join(versions)}\n")
    print(render(rows, mean_bytes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
