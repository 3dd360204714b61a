"""The README's first command: the embedded default shows the example's events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from processor.diffing import run_diff

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _key(event: dict[str, object]) -> tuple[str, str]:
    account = event["account"]
    assert isinstance(account, dict)
    return str(event["eventType"]), str(account["nativeIdentity"])


@pytest.mark.broker
def test_demo_streams_the_same_events_as_diff_on_the_examples(tmp_path: Path) -> None:
    """`ncd-processor demo --json` (own embedded broker) prints exactly diff's events."""
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "demo", "--json"],
        cwd=tmp_path,
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    streamed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]
    expected = run_diff(
        source_path=EXAMPLES / "source.json",
        previous_path=EXAMPLES / "previous.jsonl",
        current_path=EXAMPLES / "current.jsonl",
        catalog_path=EXAMPLES / "catalog.jsonl",
        provisioning_path=EXAMPLES / "provisioning.jsonl",
    )
    offline = [json.loads(line) for line in expected.splitlines()]
    assert len(offline) == 5
    assert sorted(map(_key, streamed)) == sorted(map(_key, offline))
    # Same content as diff's, apart from the id (the worker's ids include the aggregation id).
    strip = lambda e: {k: v for k, v in e.items() if k != "id"}  # noqa: E731
    assert sorted(map(json.dumps, map(strip, streamed))) == sorted(
        map(json.dumps, map(strip, offline))
    )
