"""The composition root: the ``ncd-processor`` command line.

Only this module knows the concrete classes (Kafka clients, LMDB stores, files); it wires
them into the pure core and the runner. Subcommands:

- ``run``: the streaming worker (Kafka in, events out).
- ``publish``: send a source, a catalog and a snapshot file to Kafka as one aggregation.
- ``diff``: compare two snapshot files offline (docs/records.md).
- ``replay``: the worker's pipeline over local snapshot files, with local state.
- ``schemas``: regenerate the published JSON Schemas.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from pydantic import BaseModel

from processor import codec
from processor.core import (
    DuplicateAccountError,
    EntitlementCatalog,
    diff_snapshots,
)
from processor.errors import (
    BrokerAccessError,
    ConfigError,
    FileInputError,
    ProcessorError,
    StateError,
    TransportError,
)
from processor.files import open_private, private_dir, read_catalog, read_document, read_lines
from processor.models import Account, ProvisioningRecord, SourceDescriptor

if TYPE_CHECKING:
    from processor.config import Settings
    from processor.observability.health import HealthServer
    from processor.runner import Runner

M = TypeVar("M", bound=BaseModel)

EXIT_OK = 0
#: Bad configuration or input: fix the settings or the file, then run again.
EXIT_BAD_INPUT = 2
#: The broker or the local state store failed: retrying later (a restart) may succeed.
EXIT_BROKER_OR_STATE = 3


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand; the settings flags only for ``command``
    when given (``diff`` then never imports the settings: issue 14, start-up time)."""
    parser = argparse.ArgumentParser(
        prog="ncd-processor",
        description="Native change detection: diff account snapshots into NCD events.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    diff.set_defaults(handler=_cmd_diff)

    run = sub.add_parser(
        "run",
        help="run the streaming worker",
        description=(
            "Consume ncd.aggregations, keep every account's last state, publish NCD events. "
            "Every setting below can also be given as the environment variable shown, or in "
            "a file named by NCD_ENV_FILE; flags win over the environment."
        ),
    )
    if command in (None, "run"):
        _add_setting_flags(run)
    run.set_defaults(handler=_cmd_run)

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
    if command in (None, "publish"):
        _add_setting_flags(publish, only=_PUBLISH_SETTINGS)
    publish.set_defaults(handler=_cmd_publish)

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
    demo.set_defaults(handler=_cmd_demo)

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
    replay.set_defaults(handler=_cmd_replay)

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
    revert.set_defaults(handler=_cmd_revert)

    schemas = sub.add_parser("schemas", help="regenerate the JSON Schemas into a directory")
    schemas.add_argument("directory", type=Path, nargs="?", default=Path("schemas"))
    schemas.set_defaults(handler=_cmd_schemas)
    return parser


_PUBLISH_SETTINGS = frozenset(
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
_SECRETS = frozenset({"sasl_password", "ssl_password"})


def _add_setting_flags(parser: argparse.ArgumentParser, only: frozenset[str] | None = None) -> None:
    """One ``--flag`` per setting, documented with its environment variable and default."""
    from processor.config import Settings

    group = parser.add_argument_group("settings (flag / environment variable)")
    for name, info in Settings.model_fields.items():
        if only is not None and name not in only:
            continue
        default = "(secret)" if name in _SECRETS else info.get_default(call_default_factory=True)
        text = (
            info.description or name.replace("_", " ")
        ) + f" [env NCD_{name.upper()}; default {default}]"
        group.add_argument(
            "--" + name.replace("_", "-"), dest=f"setting_{name}", help=text, metavar="VALUE"
        )


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        key[len("setting_") :]: value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    for name in sorted(_SECRETS & overrides.keys()):
        flag = "--" + name.replace("_", "-")
        print(
            f"ncd-processor: warning: {flag} shows in process listings to every local user; "
            f"use NCD_{name.upper()}_FILE (or NCD_{name.upper()}) instead",
            file=sys.stderr,
        )
    from processor.config import load_settings

    return load_settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ncd-processor`` console script."""
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(given[0] if given else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except FileInputError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProcessorError as exc:
        print(f"ncd-processor: {exc}", file=sys.stderr)
        return exit_code(exc)
    return code


def exit_code(exc: ProcessorError) -> int:
    """The exit status of a run that ended with ``exc``.

    2 for bad configuration or input (including a broker refusing the credentials, or none
    answering at start: the settings are the likely cause); 3 for a broker or state store
    that failed.
    """
    if isinstance(exc, BrokerAccessError):
        return EXIT_BAD_INPUT
    if isinstance(exc, TransportError | StateError):
        return EXIT_BROKER_OR_STATE
    return EXIT_BAD_INPUT


def _cmd_diff(args: argparse.Namespace) -> int:
    out = run_diff(
        source_path=args.source,
        previous_path=args.previous,
        current_path=args.current,
        catalog_path=args.entitlements,
        provisioning_path=args.provisioning,
        warn=_warn,
    )
    _write_all(sys.stdout, out)
    return EXIT_OK


def run_diff(
    *,
    source_path: Path,
    previous_path: Path,
    current_path: Path,
    catalog_path: Path | None = None,
    provisioning_path: Path | None = None,
    warn: Callable[[str], None] = lambda _message: None,
) -> bytes:
    """Read the inputs, diff them, and return the events as JSON Lines bytes.

    Everything is read and checked before anything is written, so bad input yields
    an error and no events. ``warn`` is told, in one line, when the delete guard (R10)
    held deletions back. The cyclic garbage collector is paused meanwhile: loading
    hundreds of thousands of small objects makes it rescan them again and again
    (100k-account pair: 22.7 s with it, 14.3 s without, BENCHMARKS.md); the diff creates
    no reference cycles worth collecting.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _diff_files(
            source_path, previous_path, current_path, catalog_path, provisioning_path, warn
        )
    finally:
        if paused:
            gc.enable()


def _diff_files(
    source_path: Path,
    previous_path: Path,
    current_path: Path,
    catalog_path: Path | None,
    provisioning_path: Path | None,
    warn: Callable[[str], None],
) -> bytes:
    source = read_document(source_path, SourceDescriptor, "source descriptor")
    previous = read_lines(previous_path, Account, "account record")
    current = read_lines(current_path, Account, "account record")
    catalog = EntitlementCatalog([] if catalog_path is None else read_catalog(catalog_path))
    provisioning = _records(provisioning_path, ProvisioningRecord, "provisioning record")
    try:
        result = diff_snapshots(
            source,
            [x.record for x in previous],
            [x.record for x in current],
            catalog,
            provisioning,
        )
    except DuplicateAccountError as exc:
        located = previous if exc.side == "previous" else current
        path = previous_path if exc.side == "previous" else current_path
        reason = f"{exc.reason} (first at line {located[exc.first_index].line})"
        raise FileInputError(str(path), located[exc.index].line, reason) from exc
    if result.guard is not None:
        warn(result.guard.message())
    return b"".join(codec.dumps(event.model_dump(mode="json")) + b"\n" for event in result.events)


def _cmd_run(args: argparse.Namespace) -> int:
    from processor.observability.logging import configure_logging
    from processor.runner import Runner
    from processor.state import LmdbStoreFactory
    from processor.wiring import make_transport

    settings = _settings_from(args)
    if settings.processes > 1:  # one ``run`` child per process, under a supervisor
        from processor.supervisor import run_processes

        given = {k: v for k, v in vars(args).items() if k.startswith("setting_") and v is not None}
        return run_processes(settings, {k[len("setting_") :]: v for k, v in given.items()})
    configure_logging(settings.log_level, settings.log_format)
    try:
        private_dir(settings.state_dir)
    except OSError as exc:
        raise ConfigError(
            f"NCD_STATE_DIR: cannot create {settings.state_dir}: {exc.strerror}"
        ) from exc
    runner = Runner(
        settings,
        make_transport(settings),
        LmdbStoreFactory(settings.state_dir, settings.topic_aggregations),
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    health = _start_health(settings, runner)
    try:
        runner.run(stop)
    finally:
        if health is not None:
            health.stop()
    return EXIT_OK


def _start_health(settings: Settings, runner: Runner) -> HealthServer | None:
    """Serve /metrics, /livez and /readyz of ``runner`` unless ``NCD_HTTP_PORT`` is 0."""
    if settings.http_port == 0:
        return None
    import structlog

    from processor.observability.health import HealthServer

    try:
        server = HealthServer(
            settings.http_host, settings.http_port, runner.metrics, runner.live, runner.ready.is_set
        ).start()
    except OSError as exc:
        where = f"{settings.http_host}:{settings.http_port}"
        raise ConfigError(f"NCD_HTTP_PORT: cannot listen on {where}: {exc.strerror}") from exc
    structlog.get_logger("processor.cli").info(
        "http_endpoint_started", host=settings.http_host, port=server.port
    )
    return server


def _cmd_publish(args: argparse.Namespace) -> int:
    from processor.models import AggregationMode, AggregationStatus
    from processor.progress import progress_bar
    from processor.publisher import Publisher, Topics
    from processor.topics import aggregation_partitions, ensure_topics
    from processor.wiring import make_transport

    settings = _settings_from(args)
    source = read_document(args.source, SourceDescriptor, "source descriptor")
    catalog = [] if args.entitlements is None else read_catalog(args.entitlements)
    provisioning = _records(args.provisioning, ProvisioningRecord, "provisioning record")
    accounts = _records(args.snapshot, Account, "account record")
    transport = make_transport(settings)
    admin = transport.admin()
    try:
        if settings.create_topics:
            partitions = ensure_topics(admin, settings)
        else:
            partitions = aggregation_partitions(admin, settings)
    finally:
        admin.close()
    producer = transport.producer()
    topics = Topics(
        settings.topic_sources,
        settings.topic_entitlements,
        settings.topic_aggregations,
        settings.topic_provisioning,
    )
    try:
        publisher = Publisher(producer, partitions, topics)
        publisher.publish_source(source)
        summary: dict[str, Any] = {"source": source.id}
        if catalog:
            summary["catalog_entries"] = publisher.publish_catalog(source.id, catalog)
        if provisioning:
            uuids = {a.nativeIdentity: a.uuid for a in accounts}
            summary["provisioning_records"] = publisher.publish_provisioning(
                provisioning, uuids.get
            )
        if args.snapshot is not None:
            with progress_bar(len(accounts), desc="publish", unit="acct", quiet=args.quiet) as bar:
                summary["aggregation_id"] = publisher.publish_aggregation(
                    source.id,
                    accounts,
                    mode=AggregationMode(args.mode),
                    status=AggregationStatus(args.status),
                    aggregation_id=args.aggregation_id,
                    started_at=args.started_at,
                    progress=bar.advance_to,
                )
            summary["accounts"] = len(accounts)
    finally:
        producer.close()
    print(codec.dumps(summary).decode())
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from processor.demo import default_examples, run_demo
    from processor.observability.logging import configure_logging

    configure_logging("warning")
    run_demo(args.examples or default_examples(), sys.stdout, as_json=args.json)
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from processor.progress import ProgressBar, progress_bar
    from processor.replay import read_replay_dir, replay

    def bar(total: int, label: str) -> ProgressBar:
        return progress_bar(total, desc=label, unit="B", unit_scale=True, quiet=args.quiet)

    inputs = read_replay_dir(args.directory, bar)
    state_dir = args.state_dir or args.directory / "state"
    if args.output is None:
        sys.stdout.flush()
        summary = replay(inputs, state_dir, sys.stdout.buffer, bar=bar, warn=_warn)
    else:
        with open_private(args.output) as out:
            summary = replay(inputs, state_dir, out, bar=bar, warn=_warn)
    print(codec.dumps(summary.as_dict()).decode(), file=sys.stderr)
    return EXIT_OK


def _records(path: Path | None, model: type[M], what: str) -> list[M]:
    """The records of an optional JSON Lines file (none when no path is given)."""
    return [] if path is None else [x.record for x in read_lines(path, model, what)]


def _cmd_revert(args: argparse.Namespace) -> int:
    from processor.revert import run_revert

    _write_all(sys.stdout, run_revert(events_path=args.events, source_path=args.source))
    return EXIT_OK


def _cmd_schemas(args: argparse.Namespace) -> int:
    from processor.schemas import write

    for path in write(args.directory):
        print(path)
    return EXIT_OK


def _warn(message: str) -> None:
    """A warning on standard error, as one line."""
    print(f"ncd-processor: warning: {message}", file=sys.stderr)


def _write_all(stream: TextIO, data: bytes) -> None:
    stream.flush()
    stream.buffer.write(data)
    stream.buffer.flush()


if __name__ == "__main__":
    raise SystemExit(main())
