#!/usr/bin/env python3
"""Deploy smoke test: build deploy/Dockerfile, run the image against a Kafka broker, check it.

Run from the repository root with the project's virtual environment (it publishes the
examples and reads the events with the project's own code):

    .venv/bin/python scripts/deploy_smoke.py --bootstrap-servers 127.0.0.1:9092

What it does, failing with a reason at the first step that goes wrong:

1. builds ``deploy/Dockerfile`` with podman or Docker (on ``python:3.11-slim``, or with
   ``--debian-base`` on a base image it makes from Debian's packages with debootstrap and
   keeps in the engine's image store for the next run) and prints the build time and the
   image's size;
2. runs the image on the host network against the broker (unique topics and group, so it
   can share a broker), with its state on a fresh named volume, and waits for ``/readyz``;
3. publishes the examples with ``ncd-processor publish`` (baseline, then the provisioning
   record and the next aggregation), waiting each time until the worker has committed every
   input record, and checks that the events on the events topic (read_committed) are
   ``ncd-processor diff``'s on the same files, and that nothing went to the dead letters;
4. checks that the worker runs as uid 10001 and keeps its state stores on the volume, and
   that the image's HEALTHCHECK command succeeds inside the container;
5. stops the container with SIGTERM (exit status 0), starts a new one on the same volume,
   and checks that it restores from the volume without reading the changelog or
   reprocessing anything (same state keys, no record decided, no new event), then stops it.

The containers and the volume are removed at the end (``--keep`` leaves them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
STATE_DIR = "/var/lib/ncd"
UID = 10001
IMAGE = "localhost/ncd-processor:smoke"
PARTITIONS = 3
#: Debian base for --debian-base: what debootstrap installs. Its hash names the cached image.
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: Dropped from the base: package lists and downloads, documentation, translations.
DEBIAN_PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/locale", "usr/share/info")  # fmt: skip
#: Explicit limits for podman containers: some sandboxes refuse podman's default (the
#: host's) process and file limits; these are ample for one worker.
PODMAN_ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
# Bounds of the waits (each waits on a true condition and returns as soon as it holds).
READY_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 90.0
POLL_S = 0.25


class SmokeError(Exception):
    """A step of the smoke test failed; the message says which and why."""


# ----------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class Engine:
    """A container engine CLI: podman or docker, with its global options."""

    kind: str  # "podman" or "docker"
    command: tuple[str, ...]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600, stdin: Any = None
    ) -> subprocess.CompletedProcess[str]:
        # The Dockerfile mounts a build secret: BuildKit (Docker's default builder since 23).
        env = {**os.environ, "DOCKER_BUILDKIT": "1"} if self.kind == "docker" else None
        done = subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=stdin,
            env=env,
        )
        if check and done.returncode != 0:
            raise SmokeError(
                f"`{self.kind} {' '.join(args[:2])}` failed ({done.returncode}): "
                f"{done.stderr.strip()[-2000:]}"
            )
        return done

    def inspect(self, what: str, name: str, template: str) -> str:
        return self(what, "inspect", "--format", template, name).stdout.strip()


def find_engine(name: str | None = None, runtime: str | None = None) -> Engine:
    """podman (preferred) or docker from PATH; ``runtime`` is podman's OCI runtime.

    Without ``runtime``, podman uses ``runc`` when it is installed: ``crun``, podman's
    default, fails on some cgroup set-ups (this project's machines among them).
    """
    for kind in [name] if name else ["podman", "docker"]:
        path = shutil.which(kind)
        if path is None:
            continue
        if kind == "podman":
            runtime = runtime or shutil.which("runc")
            return Engine(kind, (path, "--runtime", runtime) if runtime else (path,))
        return Engine(kind, (path,))
    raise SmokeError(f"no container engine: {name or 'podman or docker'} is not on PATH")


# ----------------------------------------------------------------------------- image


def debian_base(engine: Engine, refresh: bool = False) -> str:
    """A python3 base image made from Debian's packages, built once and kept by tag."""
    recipe = " ".join((DEBIAN_SUITE, *DEBIAN_PACKAGES, *DEBIAN_PRUNE))
    tag = f"localhost/ncd-base:{DEBIAN_SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if engine("image", "inspect", tag, check=False).returncode == 0 and not refresh:
        say(f"base image {tag} (cached)")
        return tag
    if shutil.which("debootstrap") is None:
        raise SmokeError("--debian-base needs debootstrap (apt-get install debootstrap)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ncd-base-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}",
             DEBIAN_SUITE, str(rootfs)],
            capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SmokeError(f"debootstrap failed ({done.returncode}): {done.stdout[-2000:]}")
        for sub in DEBIAN_PRUNE:
            shutil.rmtree(rootfs / sub, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            engine(
                "import",
                "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", "ENV LANG=C.UTF-8",
                "-", tag,
                stdin=tar.stdout,
            )  # fmt: skip
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
    say(f"base image {tag} built from Debian's packages in {time.monotonic() - started:.1f} s")
    return tag


def pip_ca_bundle() -> Path | None:
    """The CA bundle pip uses on this machine (PIP_CERT or pip's ``cert`` setting), if any."""
    value = os.environ.get("PIP_CERT")
    if not value:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        for line in done.stdout.splitlines():
            key, _, raw = line.partition("=")
            if key.endswith(".cert"):
                value = raw.strip().strip("'\"")
    return Path(value) if value and Path(value).is_file() else None


def build_image(engine: Engine, base: str | None, tag: str = IMAGE) -> float:
    """Build deploy/Dockerfile as ``tag`` on ``base`` (the Dockerfile's default if None)."""
    args = ["build", "-f", str(DOCKERFILE), "-t", tag]
    if engine.kind == "podman":
        # OCI images have no HEALTHCHECK; the host network spares podman's network set-up.
        args += ["--format", "docker", "--network", "host"]
    if base:
        args += ["--build-arg", f"PYTHON_IMAGE={base}"]
    ca = pip_ca_bundle()
    if ca is not None:
        args += ["--secret", f"id=pip-ca,src={ca}"]
    before = engine("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    started = time.monotonic()
    engine(*args, str(ROOT), timeout=1800)
    elapsed = time.monotonic() - started
    say(f"built {tag} in {elapsed:.1f} s")
    if before and before != engine.inspect("image", tag, "{{.Id}}"):
        engine("rmi", before, check=False)  # the last run's image, unless still in use
    return elapsed


# ----------------------------------------------------------------------------- Kafka side


@dataclass
class Stack:
    """One smoke run's names: topics, group, volume, containers, HTTP port."""

    engine: Engine
    bootstrap: str
    image: str = IMAGE
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    port: int = field(default_factory=lambda: free_port())
    containers: list[str] = field(default_factory=list)

    @property
    def volume(self) -> str:
        return f"ncd-smoke-{self.tag}"

    @property
    def group(self) -> str:
        return f"ncd-smoke-{self.tag}"

    def topic(self, name: str) -> str:
        return f"smoke-{self.tag}.{name}"

    def env(self) -> dict[str, str]:
        env = {
            "NCD_BOOTSTRAP_SERVERS": self.bootstrap,
            "NCD_GROUP_ID": self.group,
            "NCD_INSTANCE_ID": "smoke-0",
            "NCD_PARTITIONS": str(PARTITIONS),
            # Host network: the endpoint would listen on every address of the machine.
            "NCD_HTTP_HOST": "127.0.0.1",
            "NCD_HTTP_PORT": str(self.port),
        }
        env.update({f"NCD_{n.upper()}": self.topic(n[len("topic_") :]) for n in topic_settings()})
        return env

    # ---------------------------------------------------------------- containers

    def start(self) -> str:
        name = f"ncd-smoke-{self.tag}-{len(self.containers) + 1}"
        args = ["run", "-d", "--name", name, "--network", "host"]
        if self.engine.kind == "podman":
            args += PODMAN_ULIMITS
        args += ["-v", f"{self.volume}:{STATE_DIR}"]
        for key, value in self.env().items():
            args += ["-e", f"{key}={value}"]
        self.engine(*args, self.image)
        self.containers.append(name)
        return name

    def running(self, name: str) -> bool:
        return self.engine.inspect("container", name, "{{.State.Running}}") == "true"

    def logs(self, name: str) -> str:
        done = self.engine("logs", name, check=False)
        return done.stdout + done.stderr

    def stop(self, name: str) -> int:
        """SIGTERM, then the exit status once the container has stopped."""
        self.engine("kill", "--signal", "TERM", name)
        done = self.engine("wait", name, timeout=STOP_TIMEOUT_S)
        return int(done.stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        for name in self.containers:
            self.engine("rm", "-f", name, check=False)
        self.engine("volume", "rm", "-f", self.volume, check=False)

    # ---------------------------------------------------------------- HTTP

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def metrics(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Samples of /metrics by name, then by labels."""
        from prometheus_client.parser import text_string_to_metric_families

        status, text = self.get("/metrics")
        if status != 200:
            raise SmokeError(f"/metrics answered {status}")
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return samples

    def wait_ready(self, name: str) -> None:
        """/readyz answers 200 and every partition's state store is open."""

        def ready() -> bool:
            if self.get("/readyz")[0] != 200:
                return False
            return len(self.metrics().get("ncd_state_keys", {})) == PARTITIONS

        self.wait(ready, f"{name} to be ready", READY_TIMEOUT_S, name)

    def wait(self, done: Callable[[], bool], what: str, timeout_s: float, name: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if not self.running(name):
                raise SmokeError(
                    f"{name} stopped while waiting for {what}:\n{tail(self.logs(name))}"
                )
            if time.monotonic() > deadline:
                raise SmokeError(f"timed out waiting for {what}:\n{tail(self.logs(name))}")
            time.sleep(POLL_S)

    # ---------------------------------------------------------------- Kafka

    @contextmanager
    def consumer(self, group: str | None = None) -> Iterator[Any]:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        try:
            yield consumer
        finally:
            consumer.close()

    def partitions(self, *names: str) -> list[Any]:
        from kafka import TopicPartition

        return [TopicPartition(self.topic(n), p) for n in names for p in range(PARTITIONS)]

    def end_offsets(self, *names: str) -> dict[Any, int]:
        with self.consumer() as consumer:
            return dict(consumer.end_offsets(self.partitions(*names)))

    def wait_drained(self, name: str) -> None:
        """The worker's group has committed every input record published so far."""
        ends = self.end_offsets("aggregations", "provisioning")
        with self.consumer(self.group) as consumer:

            def drained() -> bool:
                return all((consumer.committed(tp) or 0) >= end for tp, end in ends.items())

            self.wait(drained, "the worker to commit its input", DRAIN_TIMEOUT_S, name)

    def read(self, name: str) -> list[bytes]:
        """Every committed record's value of a topic, up to its end offsets."""
        tps = self.partitions(name)
        out: list[bytes] = []
        with self.consumer() as consumer:
            ends = consumer.end_offsets(tps)
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise SmokeError(f"could not read {self.topic(name)} to its end")
                for batch in consumer.poll(timeout_ms=500).values():
                    out.extend(r.value for r in batch)
        return out

    def publish(self, *args: str) -> None:
        """``ncd-processor publish`` of this checkout, on this run's topics."""
        env = {**os.environ, **self.env(), "NCD_LOG_FORMAT": "json"}
        done = subprocess.run(
            [sys.executable, "-m", "processor.cli", "publish", "--quiet", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SmokeError(f"publish failed ({done.returncode}): {tail(done.stderr)}")


# ----------------------------------------------------------------------------- the run


@dataclass
class Report:
    """What a smoke run measured."""

    base_image: str
    build_s: float
    image_bytes: int
    events: int
    state_keys: int


def expected_events() -> list[str]:
    """``ncd-processor diff`` on the examples, as canonical JSON without ids."""
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "diff",
         "--source", str(EXAMPLES / "source.json"),
         "--entitlements", str(EXAMPLES / "catalog.jsonl"),
         "--provisioning", str(EXAMPLES / "provisioning.jsonl"),
         str(EXAMPLES / "previous.jsonl"), str(EXAMPLES / "current.jsonl")],
        cwd=ROOT, capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise SmokeError(f"diff failed ({done.returncode}): {tail(done.stderr.decode())}")
    return canonical(done.stdout.splitlines())


def canonical(values: Sequence[bytes]) -> list[str]:
    """Events as sorted canonical JSON strings, ids left out (the worker's include the
    aggregation id, diff's do not)."""
    events = (json.loads(v) for v in values if v.strip())
    return sorted(json.dumps({k: v for k, v in e.items() if k != "id"}, sort_keys=True)
                  for e in events)  # fmt: skip


def check_image(engine: Engine, image: str) -> tuple[int, list[str]]:
    """The image's size and HEALTHCHECK command; fails unless it runs as uid 10001."""
    user = engine.inspect("image", image, "{{.Config.User}}")
    if user.split(":")[0] != str(UID):
        raise SmokeError(f"image user is {user!r}, not {UID}")
    size = int(engine.inspect("image", image, "{{.Size}}"))
    check = json.loads(engine.inspect("image", image, "{{json .Config.Healthcheck}}") or "null")
    if not check or not check.get("Test"):
        raise SmokeError("the image has no HEALTHCHECK")
    test: list[str] = check["Test"]
    if test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", test[1]]
    elif test[0] == "CMD":
        command = test[1:]
    else:
        raise SmokeError(f"unexpected HEALTHCHECK {test[0]!r}")
    return size, command


def check_container(stack: Stack, name: str, healthcheck: list[str]) -> None:
    """uid 10001 for the worker, its stores on the volume, the HEALTHCHECK succeeding."""
    status = stack.engine("exec", name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    if set(uids) != {str(UID)}:
        raise SmokeError(f"the worker runs as uid {uids}, not {UID}")
    listing = stack.engine(
        "exec", name, "find", STATE_DIR, "-mindepth", "1", "-maxdepth", "1", "-printf", "%U %f\n"
    ).stdout.split("\n")
    stores = {f"{stack.topic('aggregations')}-{p}" for p in range(PARTITIONS)}
    owned = {line.split(" ", 1)[1] for line in listing if line.startswith(f"{UID} ")}
    if not stores <= owned:
        raise SmokeError(f"state stores not on the volume as uid {UID}: {listing}")
    done = stack.engine("exec", name, *healthcheck, check=False)
    if done.returncode != 0:
        raise SmokeError(f"the HEALTHCHECK command failed ({done.returncode}): {done.stderr}")
    if stack.engine.kind == "podman":  # and podman's own run of it ("healthy" or not)
        done = stack.engine("healthcheck", "run", name, check=False)
        if done.returncode != 0:
            raise SmokeError(f"podman healthcheck run: {done.stdout}{done.stderr}")


def state_keys(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> int:
    return int(sum(samples.get("ncd_state_keys", {}).values()))


def total(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> float:
    return sum(samples.get(name, {}).values())


def run_smoke(
    bootstrap: str,
    *,
    engine: Engine,
    debian: bool = False,
    base_image: str | None = None,
    refresh_base: bool = False,
    keep: bool = False,
) -> Report:
    """The whole smoke test (see the module's docstring); raises SmokeError on a failure."""
    base = debian_base(engine, refresh_base) if debian else base_image
    build_s = build_image(engine, base)
    size, healthcheck = check_image(engine, IMAGE)
    say(f"image {IMAGE}: {size / 1e6:.0f} MB")
    expected = expected_events()
    stack = Stack(engine, bootstrap)
    try:
        first = stack.start()
        stack.wait_ready(first)
        say(f"{first} ready on :{stack.port}")
        # The baseline with the catalog, then the platform's own change with the next
        # aggregation, each processed and committed before the next publish.
        for flag, extra, started_at, snapshot in (
            ("--entitlements", "catalog.jsonl", "2026-11-21T08:00:00Z", "previous.jsonl"),
            ("--provisioning", "provisioning.jsonl", "2026-11-22T08:00:00Z", "current.jsonl"),
        ):
            stack.publish(
                "--source", str(EXAMPLES / "source.json"),
                flag, str(EXAMPLES / extra),
                "--started-at", started_at,
                str(EXAMPLES / snapshot),
            )  # fmt: skip
            stack.wait_drained(first)
        events = stack.read("events")
        if canonical(events) != expected:
            raise SmokeError(
                f"the worker's {len(events)} events differ from diff's {len(expected)}"
            )
        dead = stack.read("dlq")
        if dead:
            raise SmokeError(f"{len(dead)} record(s) went to the dead-letter topic")
        say(f"{len(events)} events, equal to ncd-processor diff's")
        check_container(stack, first, healthcheck)
        say(f"runs as uid {UID}, state on the volume, HEALTHCHECK passes")
        keys = state_keys(stack.metrics())
        status = stack.stop(first)
        if status != 0:
            raise SmokeError(f"{first} exited with {status} on SIGTERM:\n{tail(stack.logs(first))}")
        say(f"{first} stopped by SIGTERM with exit status 0")

        ends = stack.end_offsets("events")
        second = stack.start()
        stack.wait_ready(second)
        samples = stack.metrics()
        restored = total(samples, "ncd_restore_records_total")
        decided = total(samples, "ncd_records_total")
        if state_keys(samples) != keys or restored != 0 or decided != 0:
            raise SmokeError(
                f"{second} did not restore from the volume: {state_keys(samples)} state keys "
                f"(before: {keys}), {restored:.0f} changelog records read, {decided:.0f} records "
                "decided"
            )
        status = stack.stop(second)
        if status != 0:
            raise SmokeError(f"{second} exited with {status} on SIGTERM")
        if stack.end_offsets("events") != ends:
            raise SmokeError(f"{second} published events again")
        say(f"{second} restored {keys} state keys from the volume, reprocessed nothing")
        return Report(base or "python:3.11-slim", build_s, size, len(events), keys)
    finally:
        if keep:
            say(f"kept: containers {stack.containers}, volume {stack.volume}")
        else:
            stack.remove()


# ----------------------------------------------------------------------------- helpers


def topic_settings() -> list[str]:
    """The worker's topic settings (``topic_events``, ...): each run gets its own topics."""
    from processor.config import Settings

    return [name for name in Settings.model_fields if name.startswith("topic_")]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def say(message: str) -> None:
    print(f"deploy-smoke: {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build deploy/Dockerfile, run it against a Kafka broker and check it."
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="the broker, reachable from the host network (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--engine", choices=["podman", "docker"], help="default: podman, else docker"
    )
    parser.add_argument("--runtime", help="podman's OCI runtime (default: runc when installed)")
    bases = parser.add_mutually_exclusive_group()
    bases.add_argument(
        "--debian-base",
        action="store_true",
        help="build on a base made from Debian's packages (debootstrap, as root)",
    )
    bases.add_argument(
        "--base-image", help="PYTHON_IMAGE build argument (default: the Dockerfile's)"
    )
    parser.add_argument("--refresh-base", action="store_true", help="rebuild the Debian base")
    parser.add_argument("--keep", action="store_true", help="keep the containers and volume")
    args = parser.parse_args(argv)
    if not args.bootstrap_servers:
        parser.error("no broker: give --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS")
    try:
        engine = find_engine(args.engine, args.runtime)
        report = run_smoke(
            args.bootstrap_servers,
            engine=engine,
            debian=args.debian_base,
            base_image=args.base_image,
            refresh_base=args.refresh_base,
            keep=args.keep,
        )
    except SmokeError as exc:
        print(f"deploy-smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    say(f"passed: {json.dumps(report.__dict__)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
