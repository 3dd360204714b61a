"""``ncd-processor diff`` imports only what it needs (issue 14: start-up time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

PROBE = """
import sys
from processor.cli import main
code = main(sys.argv[1:])
loaded = (
    "processor.config", "pydantic_settings", "processor.transport", "processor.runner",
    "processor.state", "lmdb", "kafka", "confluent_kafka", "structlog",
)
print(code, sorted(m for m in loaded if m in sys.modules), file=sys.stderr)
"""


def test_diff_does_not_import_the_worker_settings() -> None:
    """A diff run loads neither the worker's settings nor pydantic-settings nor the transport,
    the runner, the state stores, the Kafka clients or the logging library."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            "diff",
            "--source",
            str(EXAMPLES / "source.json"),
            str(EXAMPLES / "previous.jsonl"),
            str(EXAMPLES / "current.jsonl"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.count("\n") > 1  # the events
    assert done.stderr.strip().splitlines()[-1] == "0 []"


def test_run_still_has_every_setting_flag() -> None:
    """The worker's subcommand keeps its settings flags when it is the one being run."""
    from processor.cli_args import build_parser

    help_text = build_parser("run")._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr]
    assert "--max-partition-fetch-bytes" in help_text
    assert "NCD_BOOTSTRAP_SERVERS" in help_text
