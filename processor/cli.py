"""The composition root: the ``ncd-processor`` command line.

Only this module knows the concrete classes (Kafka clients, LMDB stores, files); it wires
them into the pure core and the runner. :mod:`processor.cli_args` builds the arguments;
here each subcommand is run:

- ``run``: the streaming worker (Kafka in, events out).
- ``publish``: send a source, a catalog and a snapshot file to Kafka as one aggregation.
- ``diff``: compare two snapshot files offline (:mod:`processor.diffing`, docs/records.md).
- ``replay``: the worker's pipeline over local snapshot files, with local state.
- ``revert``: the remediation commands that revert a file of events.
- ``demo``: the whole pipeline on the bundled example, with an embedded broker.
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
from processor.cli_args import build_parser
from processor.cli_args import settings_from as _settings_from
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ncd-processor`` console script."""
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(given[0] if given else None)
    args = parser.parse_args(argv)
    try:
        code = _handler(args.command)(args)
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
    from processor.diffing import DiffFiles, write_diff

    files = DiffFiles(
        args.source, args.previous, args.current, args.entitlements, args.provisioning
    )
    sys.stdout.flush()
    write_diff(sys.stdout.buffer, files, _warn)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _freeze_startup_objects() -> None:
    """Leave what start-up built (modules, validators, clients) out of every later collection
    of the garbage collector: the loop's garbage is short-lived, and each full collection
    walked all of it again (a full collection every ~1.2 s of the worker's CPU: 17-21 ms
    frozen, 33-40 ms not, on kafka-python; BENCHMARKS.md, "Garbage collector")."""
    gc.collect()
    gc.freeze()


def _cmd_run(args: argparse.Namespace) -> int:
    from processor.observability.logging import configure_logging
    from processor.runner import Runner
    from processor.state import LmdbStoreFactory
    from processor.transport.factory import make_transport
    from processor.worker.clock import SYSTEM_CLOCK

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
        clock=SYSTEM_CLOCK,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    health = _start_health(settings, runner)
    _freeze_startup_objects()
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
            settings.http_host,
            settings.http_port,
            runner.metrics,
            runner.live,
            runner.ready.is_set,
            ready_detail=runner.readiness,
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
    from processor.topics import check_topics, ensure_topics
    from processor.transport.factory import make_transport

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
            partitions = check_topics(admin, settings)
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


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    """What runs a subcommand (:mod:`processor.cli_args` builds its arguments)."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "diff": _cmd_diff,
        "run": _cmd_run,
        "publish": _cmd_publish,
        "demo": _cmd_demo,
        "replay": _cmd_replay,
        "revert": _cmd_revert,
        "schemas": _cmd_schemas,
    }
    return handlers[command]


if __name__ == "__main__":
    raise SystemExit(main())
