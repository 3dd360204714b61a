"""Micro-benchmark of the worker's state reads and of a FULL aggregation's completion scan.

    python -m bench.state_reads --accounts 100000
    python -m bench.state_reads --repo /tmp/base     # the same on another checkout

One LMDB store (the production :class:`~processor.state.LmdbStateStore`) holds ``--accounts``
stored accounts of ~3.3 KB of one source, and the seen-account chunks of a FULL aggregation
that saw all but ``--unseen`` of them (written per batch of 500, as the worker does). Timed,
CPU time of this process, best of ``--repeat``:

* ``store.get`` and ``BatchOverlay.get``: random existing keys (one per incoming record);
* ``completion``: what the completion of that aggregation reads before it deletes, i.e.
  the seen keys, the unseen stored accounts (``AggregationLifecycle._unseen``) and the
  account count of the delete guard (``state.count``), on a batch overlay.

``--repo`` imports ``processor`` from another checkout, so two checkouts are measured with the
same script; compare figures of one run only (the machine is shared).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCE = "src"
AGGREGATION = "agg-2"
STARTED_MS = 1_700_000_000_000
BATCH = 500


def _best(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    """Best CPU seconds of ``repeat`` calls of ``run`` and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.process_time()
        result = run()
        best = min(best, time.process_time() - began)
    return best, result


def _fill(store: Any, accounts: int, unseen: int, rng: random.Random) -> list[bytes]:
    """Store the accounts and the seen chunks; return the account keys."""
    from processor.state import BatchOverlay
    from processor.worker.batch_memory import BatchMemory
    from processor.worker.state import StoredAccount, k_account

    pool = [rng.randbytes(3300) for _ in range(64)]
    names = [f"n:user{i:07d}" for i in range(accounts)]
    keys = [k_account(SOURCE, name) for name in names]
    missing = set(rng.sample(range(accounts), unseen))
    for start in range(0, accounts, BATCH):
        writes = {}
        for i in range(start, min(start + BATCH, accounts)):
            value = StoredAccount(STARTED_MS - 1000, bytes(16), pool[i % 64]).encode()
            writes[keys[i]] = value
        store.apply(writes, start)
    memory = BatchMemory(1_000_000)
    for start in range(0, accounts, BATCH):
        overlay = BatchOverlay(store)
        memory.begin()
        for i in range(start, min(start + BATCH, accounts)):
            if i not in missing:
                memory.saw(SOURCE, AGGREGATION, names[i])
        memory.end(overlay, start)
        store.apply(overlay.writes, None)
    return keys


def _completion(lifecycle: Any, overlay: Any) -> int:
    """The completion's reads: unseen accounts and the guard's count (either API)."""
    from processor.worker.state import AggregationInfo, k_accounts

    agg = AggregationInfo(STARTED_MS, "FULL")
    found = lifecycle._unseen(SOURCE, AGGREGATION, agg, overlay)
    if isinstance(found, tuple):  # (doomed, count) where the count comes with the scan
        return len(found[0])
    overlay.count(k_accounts(SOURCE))
    return len(found)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the store, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--unseen", type=int, default=1_000)
    parser.add_argument("--gets", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))
    from processor.state import BatchOverlay, open_store
    from processor.worker.batch_memory import BatchMemory
    from processor.worker.lifecycle import AggregationLifecycle
    from processor.worker.state import StoredAccount, k_account

    rng = random.Random(7)
    base = Path(tempfile.mkdtemp(prefix="state-reads-"))
    try:
        store = open_store(base, "bench", 0, verify=False)
        keys = _fill(store, args.accounts, args.unseen, rng)
        reads = [keys[rng.randrange(len(keys))] for _ in range(args.gets)]
        overlay = BatchOverlay(store)
        newer = StoredAccount(STARTED_MS + 1, bytes(16), b"{}").encode()  # a newer one wrote
        for i in range(BATCH):  # a batch's pending writes in front of the store
            overlay.put(k_account(SOURCE, f"n:new{i:05d}"), newer)

        def gets(reader: Any) -> Callable[[], object]:
            get = reader.get
            return lambda: sum(get(k) is not None for k in reads)

        store_s, found = _best(args.repeat, gets(store))
        overlay_s, _ = _best(args.repeat, gets(overlay))
        assert found == args.gets, "a stored key was not found"
        lifecycle = AggregationLifecycle(None, BatchMemory(1_000_000), None)  # type: ignore[arg-type]
        scan_s, doomed = _best(args.repeat, lambda: _completion(lifecycle, overlay))
        assert doomed == args.unseen, f"{doomed} unseen accounts, expected {args.unseen}"
        store.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    version = sys.version.split()[0]
    print(f"{args.repo}: {args.accounts} accounts, {args.unseen} unseen, python {version}")
    print(f"  store.get    {store_s / args.gets * 1e6:6.2f} us CPU per get")
    print(f"  overlay.get  {overlay_s / args.gets * 1e6:6.2f} us CPU per get")
    per_account = scan_s / args.accounts * 1e6
    print(f"  completion   {scan_s * 1e3:6.1f} ms CPU ({per_account:.2f} us per account)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
