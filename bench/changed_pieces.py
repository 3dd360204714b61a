"""The pieces of a changed record's decision, microseconds each, two checkouts side by side
(issue 14, fourth round).

On the changed records of ``bench/generate.py`` (~3.3 KB AD-like accounts): the record's
validation (``partition._RECORD``), the stored account's decode (``accounts.stored_data``),
what to store (``account_flow._Draft.of`` from the record's own JSON), the event's output
record (``outputs.event_record``); ``bench.hot_paths`` times the whole record. Each checkout
runs in its own child process (``sys.path``), alternated; best of ``--repeat`` passes::

    python -m bench.changed_pieces --base /tmp/base7 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def _best_us(items: Sequence[Any], work: Callable[[Any], object], repeat: int) -> float:
    def one_pass() -> None:
        for item in items:
            work(item)

    return min(timeit.repeat(one_pass, number=1, repeat=repeat)) / len(items) * 1e6


def measure(limit: int, repeat: int) -> dict[str, float]:
    """Microseconds per changed record of each piece, in the imported checkout."""
    import orjson

    from bench.generate import CURRENT_AT, generate
    from bench.report import core_bench
    from processor import codec
    from processor.core import decide_event
    from processor.worker import account_flow, accounts, outputs, partition
    from processor.worker.state import StoredAccount, canonical_digest

    dataset = generate(5000, 0.05, 7)
    policy, catalog = core_bench.policy_and_catalog(dataset)
    pairs = core_bench.build_pairs(dataset, "changed", limit)
    records = core_bench._records(dataset, dataset.current(), core_bench._iso(CURRENT_AT))
    by_native = {orjson.loads(v)["account"]["nativeIdentity"]: v for _, v in records[1:-1]}
    values = [by_native[m.nativeIdentity] for m in pairs.current_models]
    objs = [codec.loads(v) for v in values]
    stored = [
        StoredAccount(0, b"", codec.dumps_canonical(m.model_dump(mode="json", exclude_none=True)))
        for m in pairs.previous_models
    ]
    given = []
    for obj in objs:
        canonical = codec.dumps_canonical(obj["account"])
        given.append((obj["account"], canonical, canonical_digest(canonical)))
    models = [partition._RECORD.validate_python(obj).account for obj in objs]
    drafts = list(zip(models, given, strict=True))
    events = [
        decide_event(policy, p, c, catalog, context="b")
        for p, c in zip(pairs.previous_models, pairs.current_models, strict=True)
    ]
    out = {
        "validate the record": _best_us(objs, partition._RECORD.validate_python, repeat),
        "decode the stored account": _best_us(stored, accounts.stored_data, repeat),
        "what to store (_Draft.of, given)": _best_us(
            drafts,
            lambda d: account_flow._Draft.of(
                d[0], (d[1][2], b""), account_flow.Given(d[1][1], d[1][0])
            ),
            repeat,
        ),
        "event output record": _best_us(
            [e for e in events if e is not None],
            lambda e: outputs.event_record("ncd.events", e, 1_764_000_000_000),
            repeat,
        ),
    }
    return out


def _child(repo: Path, limit: int, repeat: int) -> dict[str, float]:
    # This file, run against the checkout's packages (the base may not have this file).
    code = (
        f"import sys, json, importlib.util; sys.path.insert(0, {str(repo)!r}); "
        f"spec = importlib.util.spec_from_file_location('pieces', {__file__!r}); "
        "pieces = importlib.util.module_from_spec(spec); spec.loader.exec_module(pieces); "
        f"print(json.dumps(pieces.measure({limit}, {repeat})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=250, help="changed records")
    parser.add_argument("--repeat", type=int, default=15, help="passes; the best one counts")
    args = parser.parse_args(argv)
    repos = {"base": args.base.resolve(), "this": Path(__file__).resolve().parent.parent}
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in repos}
    for run in range(args.runs):
        order = list(repos.items()) if run % 2 == 0 else list(reversed(repos.items()))
        for name, repo in order:
            for piece, us in _child(repo, args.limit, args.repeat).items():
                figures[name].setdefault(piece, []).append(us)
    for piece in figures["this"]:
        base, this = (statistics.median(figures[k][piece]) for k in ("base", "this"))
        print(f"{piece}: base {base:.2f} us, this {this:.2f} us: {base / this:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
