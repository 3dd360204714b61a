"""The arguments of the ``ncd-processor`` command line: one function per subcommand, and
the worker's settings as flags.

The settings flags are built only for the subcommand being run (``diff`` then never imports
the settings: issue 14, start-up time). :mod:`processor.cli` runs what they ask for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processor.config import Settings


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand; the settings flags only for ``command``
    when given. The subcommand's name is ``args.command``."""
    parser = argparse.ArgumentParser(
        prog="ncd-processor",
        description="Native change detection: diff account snapshots into NCD events.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _diff(sub)
    _run(sub, with_settings=command in (None, "run"))
    _publish(sub, with_settings=command in (None, "publish"))
    _demo(sub)
    _replay(sub)
    _revert(sub)
    schemas = sub.add_parser("schemas", help="regenerate the JSON Schemas into a directory")
    schemas.add_argument("directory", type=Path, nargs="?", default=Path("schemas"))
    return parser


_Subparsers = argparse._SubParsersAction  # argparse's own name for what add_subparsers gives


def _diff(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    diff = sub.add_parser(
        "diff",
        help="diff two snapshot files and print the events (JSON Lines)",
        description=(
            "Write one event per line to standard output, sorted by account nativeIdentity "
            "then eventType. Exit 0, also when there are no events or the delete guard held "
            "deletions back (then one warning line on standard error); exit 2 with FILE:LINE: "
            "reason on bad input, writing no events."
        ),
    )
    diff.add_argument("--source", required=True, type=Path, metavar="SOURCE.json")
    diff.add_argument("previous", type=Path, metavar="PREVIOUS.jsonl")
    diff.add_argument("current", type=Path, metavar="CURRENT.jsonl")
    diff.add_argument("--entitlements", type=Path, metavar="CATALOG.jsonl")
    diff.add_argument("--provisioning", type=Path, metavar="PROVISIONING.jsonl")


def _run(sub: _Subparsers[argparse.ArgumentParser], *, with_settings: bool) -> None:
    run = sub.add_parser(
        "run",
        help="run the streaming worker",
        description=(
            "Consume ncd.aggregations, keep every account's last state, publish NCD events. "
            "Every setting below can also be given as the environment variable shown, or in "
            "a file named by NCD_ENV_FILE; flags win over the environment."
        ),
    )
    if with_settings:
        _add_setting_flags(run)


def _publish(sub: _Subparsers[argparse.ArgumentParser], *, with_settings: bool) -> None:
    publish = sub.add_parser(
        "publish",
        help="publish a source descriptor, a catalog and a snapshot as one aggregation",
    )
    publish.add_argument("--source", required=True, type=Path, metavar="SOURCE.json")
    publish.add_argument("snapshot", type=Path, nargs="?", metavar="SNAPSHOT.jsonl")
    publish.add_argument("--entitlements", type=Path, metavar="CATALOG.jsonl")
    publish.add_argument("--provisioning", type=Path, metavar="PROVISIONING.jsonl")
    publish.add_argument("--mode", choices=["FULL", "DELTA"], default="FULL")
    publish.add_argument(
        "--status", choices=["COMPLETED", "FAILED", "TERMINATED"], default="COMPLETED"
    )
    publish.add_argument("--aggregation-id")
    publish.add_argument("--started-at", help="RFC 3339 instant; default: now")
    publish.add_argument("--quiet", action="store_true", help="no progress bar")
    if with_settings:
        _add_setting_flags(publish, only=PUBLISH_SETTINGS)


def _demo(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on the bundled example with an embedded broker",
        description=(
            "Start an embedded Kafka-protocol broker (Tansu), run the worker, publish the "
            "example source, catalog, a baseline, a provisioning record and a second "
            "aggregation, and print the events. Needs no external service."
        ),
    )
    demo.add_argument("--examples", type=Path, default=None, metavar="DIR")
    demo.add_argument("--json", action="store_true", help="print the events as JSON Lines")


def _replay(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay",
        help="replay local snapshot files through the worker pipeline (no Kafka)",
        description=(
            "Replay DIR/aggregations/*.jsonl in name order, each a FULL aggregation of the "
            "source in DIR/source.json (with DIR/catalog.jsonl and DIR/provisioning.jsonl if "
            "present), against a local state directory kept between runs; write the events "
            "as JSON Lines. The layout is in docs/operations.md. Exit 2 with FILE:LINE: "
            "reason on bad input, writing no events and leaving the state untouched."
        ),
    )
    replay.add_argument("directory", type=Path, metavar="DIR")
    replay.add_argument(
        "--state-dir", type=Path, metavar="STATE_DIR", help="local state (default: DIR/state)"
    )
    replay.add_argument(
        "--output", type=Path, metavar="FILE", help="append events here (default: stdout)"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")


def _revert(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    revert = sub.add_parser(
        "revert",
        help="print the std:account:update commands that revert a file of events",
        description=(
            "Write one remediation command per event (JSON Lines) to standard output, "
            "sorted by account nativeIdentity then eventType. With --source, revert the "
            "change types of its remediation.revert, else all. Exit 2 with FILE:LINE: "
            "reason on bad input, writing nothing."
        ),
    )
    revert.add_argument("events", type=Path, metavar="EVENTS.jsonl")
    revert.add_argument("--source", type=Path, metavar="SOURCE.json")


#: The settings ``publish`` takes as flags: the broker, its topics, security and logging.
PUBLISH_SETTINGS = frozenset(
    {
        "bootstrap_servers",
        "partitions",
        "topic_sources",
        "topic_entitlements",
        "topic_aggregations",
        "topic_provisioning",
        "security_protocol",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "sasl_password_file",
        "allow_plaintext_sasl",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_password_file",
        "log_level",
        "log_format",
    }
)


#: Settings that hold a secret: never shown as a default; their flags warn when used.
SECRETS = frozenset({"sasl_password", "ssl_password"})


def _add_setting_flags(parser: argparse.ArgumentParser, only: frozenset[str] | None = None) -> None:
    """One ``--flag`` per setting, documented with its environment variable and default."""
    from processor.config import Settings

    group = parser.add_argument_group("settings (flag / environment variable)")
    for name, info in Settings.model_fields.items():
        if only is not None and name not in only:
            continue
        default = "(secret)" if name in SECRETS else info.get_default(call_default_factory=True)
        text = (
            info.description or name.replace("_", " ")
        ) + f" [env NCD_{name.upper()}; default {default}]"
        group.add_argument(
            "--" + name.replace("_", "-"), dest=f"setting_{name}", help=text, metavar="VALUE"
        )


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings: the environment (and NCD_ENV_FILE), overridden by the flags given; a
    warning on standard error for each secret given as a flag."""
    overrides = {
        key[len("setting_") :]: value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    for name in sorted(SECRETS & overrides.keys()):
        flag = "--" + name.replace("_", "-")
        print(
            f"ncd-processor: warning: {flag} shows in process listings to every local user; "
            f"use NCD_{name.upper()}_FILE (or NCD_{name.upper()}) instead",
            file=sys.stderr,
        )
    from processor.config import load_settings

    return load_settings(**overrides)
