"""The real worker adopts the partition count of an aggregations topic created upstream."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.transport import TopicSpec
from tests.broker import SessionBroker
from tests.conftest import TRANSPORTS
from tests.helpers import wait_for
from tests.integration.harness import ROOT, WorkerEnv
from tests.unit.conftest import make_account, make_source

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

UPSTREAM_PARTITIONS = 4


@pytest.fixture(params=TRANSPORTS)
def env(
    kafka_broker: SessionBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[WorkerEnv]:
    """Topics of which only aggregations exists (4 partitions, as an upstream team made it);
    the workers' ``--partitions`` stays at its default of 6."""
    worker_env = WorkerEnv(
        kafka_broker.bootstrap,
        tmp_path,
        partitions=UPSTREAM_PARTITIONS,
        hides_aborted=kafka_broker.hides_aborted,
        transport=str(request.param),
    )
    worker_env.extra_env["NCD_PARTITIONS"] = "6"
    admin = worker_env.kafka().admin()
    try:
        admin.ensure_topics([TopicSpec(worker_env.topic("aggregations"), UPSTREAM_PARTITIONS)])
    finally:
        admin.close()
    yield worker_env
    worker_env.stop_all()


def _count(env: WorkerEnv, name: str) -> int | None:
    admin = env.kafka().admin()
    try:
        return admin.partition_count(env.topic(name))
    finally:
        admin.close()


def test_the_worker_sizes_its_topics_from_an_upstream_aggregations_topic(env: WorkerEnv) -> None:
    """On a 4-partition aggregations topic the worker starts, makes a 4-partition changelog
    and outputs, and emits the changes of a second aggregation."""
    worker = env.start()
    wait_for(lambda: _count(env, "changelog") is not None, "the worker to create its topics")
    source = make_source()
    env.publish(source, [make_account(f"CN=u{i}", {"title": "a"}) for i in range(12)])
    env.publish(source, [make_account(f"CN=u{i}", {"title": "b"}) for i in range(12)])
    env.wait_drained()
    for name in ("changelog", "provisioning", "events", "remediations", "dlq"):
        assert _count(env, name) == UPSTREAM_PARTITIONS, name
    assert len(env.events()) == 12
    assert env.stop(worker) == 0


def test_a_provisioning_topic_sized_unlike_aggregations_is_refused(env: WorkerEnv) -> None:
    """A 6-partition provisioning topic next to a 4-partition aggregations topic: exit 2 and
    one line that names both counts and the fix."""
    admin = env.kafka().admin()
    try:
        admin.ensure_topics([TopicSpec(env.topic("provisioning"), 6)])
    finally:
        admin.close()
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "run"],
        env=env.env("w1"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    expected = (
        f"topic {env.topic('provisioning')} has 6 partitions"
        f" but {env.topic('aggregations')} has 4; they must match: recreate it with 4 partitions"
    )
    assert expected in done.stderr
    assert _count(env, "changelog") is None
