"""Least privilege: the worker runs under exactly SECURITY.md's ACLs, and fails clearly without one.

On Apache Kafka's SCRAM listener with the standard authorizer (tests/apache_kafka.py), this
test's topics get exactly the grants of :func:`processor.acls.least_privilege` (the commands
SECURITY.md shows), for the broker's test users: ``ncd-upstream`` publishes, ``ncd-platform``
writes provisioning records, ``ncd-worker`` runs the worker with ``NCD_CREATE_TOPICS=false``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from processor.acls import Grant, Role, least_privilege
from processor.config import Settings, load_settings
from processor.errors import TransportError
from processor.publisher import Publisher, Topics
from processor.transport import ClientSettings, OutRecord
from tests.apache_kafka import SCRAM_MECHANISM, SCRAM_USERS
from tests.broker import SessionBroker, sasl_bootstrap
from tests.conftest import TRANSPORTS, make_test_transport
from tests.helpers import wait_for
from tests.integration.harness import WorkerEnv
from tests.reliability.common import Chain, chain, check_exact, session_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: The broker's test user of each role.
USERS: dict[Role, str] = {
    "upstream": "ncd-upstream",
    "provisioning": "ncd-platform",
    "worker": "ncd-worker",
}
PREFIXED, LITERAL = ACLResourcePatternType.PREFIXED, ACLResourcePatternType.LITERAL
RESOURCE_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional-id": ResourceType.TRANSACTIONAL_ID,
}


def _settings(env: WorkerEnv) -> Settings:
    """The worker's settings in this environment (its topics and group)."""
    given = {k[len("NCD_") :].lower(): v for k, v in env.env("w1").items() if k.startswith("NCD_")}
    return load_settings(**given)


def _bindings(grants: list[Grant]) -> list[ACL]:
    """One allow binding per principal, resource and operation of ``grants``."""
    return [
        ACL(
            principal=f"User:{USERS[grant.role]}",
            host="*",
            operation=ACLOperation[operation.upper()],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                RESOURCE_TYPES[grant.resource],
                name,
                PREFIXED if grant.prefixed else LITERAL,
            ),
        )
        for grant in grants
        for name in grant.names
        for operation in grant.operations
    ]


def _key(acl: ACL) -> tuple[Any, ...]:
    pattern = acl.resource_pattern
    return (acl.principal, acl.operation, pattern.resource_type, pattern.resource_name)


@pytest.fixture
def admin(kafka_broker: SessionBroker) -> Iterator[KafkaAdminClient]:
    """An admin client on the PLAINTEXT listener (a super user there)."""
    client = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    yield client
    client.close()


def _grant(admin: KafkaAdminClient, bindings: list[ACL]) -> None:
    """Create the bindings and wait until the broker lists every one of them."""
    result = admin.create_acls(bindings)
    assert not result["failed"], result["failed"]
    wanted = {_key(acl) for acl in bindings}
    users = {acl.principal for acl in bindings}

    def listed() -> bool:
        found: set[tuple[Any, ...]] = set()
        for principal in users:
            acls, _error = admin.describe_acls(
                ACLFilter(
                    principal=principal,
                    host="*",
                    operation=ACLOperation.ANY,
                    permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(
                        ResourceType.ANY, None, ACLResourcePatternType.ANY
                    ),
                )
            )
            found |= {_key(acl) for acl in acls}
        return wanted <= found

    wait_for(listed, "the ACLs to be listed")


def _client(bootstrap: str, role: Role) -> ClientSettings:
    user = USERS[role]
    return ClientSettings(
        bootstrap_servers=bootstrap,
        client_id=f"ncd-test-{role}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=SCRAM_MECHANISM,
        sasl_username=user,
        sasl_password=SCRAM_USERS[user],
    )


def _publish_as_upstream(env: WorkerEnv, bootstrap: str, steps: Chain, step: int) -> None:
    """Publish one step of the chain with the upstream jobs' principal."""
    producer = make_test_transport(env.transport, _client(bootstrap, "upstream")).producer()
    names = ("sources", "entitlements", "aggregations", "provisioning")
    topics = Topics(*(env.topic(name) for name in names))
    try:
        publisher = Publisher(producer, env.partitions, topics)
        publisher.publish_source(steps.source)
        publisher.publish_catalog(steps.source.id, steps.catalog)
        publisher.publish_aggregation(
            steps.source.id, steps.accounts(step), started_at=steps.started_at(step)
        )
    finally:
        producer.close()


def _refused(env: WorkerEnv, bootstrap: str, role: Role, topic: str) -> bool:
    """Whether ``role`` is refused a write to ``topic``."""
    producer = make_test_transport(env.transport, _client(bootstrap, role)).producer()
    try:
        producer.send(OutRecord(env.topic(topic), b"x/y", b"{}"))
        producer.flush()
    except TransportError as exc:
        return re.search("authorization_?failed", str(exc), re.IGNORECASE) is not None
    finally:
        producer.close()
    return False


def _worker_env(env: WorkerEnv, bootstrap: str) -> None:
    user = USERS["worker"]
    env.extra_env.update(
        {
            "NCD_BOOTSTRAP_SERVERS": bootstrap,
            "NCD_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "NCD_SASL_MECHANISM": SCRAM_MECHANISM,
            "NCD_SASL_USERNAME": user,
            "NCD_SASL_PASSWORD": SCRAM_USERS[user],
            "NCD_CREATE_TOPICS": "false",
        }
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_worker_runs_under_exactly_the_documented_acls(
    kafka_broker: SessionBroker, admin: KafkaAdminClient, tmp_path: Path, transport: str
) -> None:
    """Under SECURITY.md's grants alone the worker emits exactly diff's events (both
    transports); the provisioning principal writes only its topic, upstream only theirs."""
    bootstrap = sasl_bootstrap(kafka_broker)
    env = session_env(kafka_broker, tmp_path)
    env.transport = transport
    _grant(admin, _bindings(least_privilege(_settings(env))))
    _worker_env(env, bootstrap)
    steps = chain(60, 2, 29)
    try:
        worker = env.start()
        _publish_as_upstream(env, bootstrap, steps, 0)
        # The platform's own change for an account nobody has: held, no event.
        record = {
            "sourceId": steps.source.id,
            "input": {"key": {"simple": {"id": "CN=nobody"}}, "changes": []},
            "completedAt": steps.started_at(0),
        }
        platform = make_test_transport(env.transport, _client(bootstrap, "provisioning"))
        producer = platform.producer()
        try:
            key = f"{steps.source.id}/CN=nobody".encode()
            producer.send(OutRecord(env.topic("provisioning"), key, json.dumps(record).encode()))
            producer.flush()
        finally:
            producer.close()
        _publish_as_upstream(env, bootstrap, steps, 1)
        env.wait_drained()
        check_exact(env, steps.expected(1, tmp_path / "expected"))
        assert env.read_all("dlq") == []
        assert env.stop(worker) == 0
    finally:
        env.stop_all()
    assert _refused(env, bootstrap, "provisioning", "aggregations")
    assert _refused(env, bootstrap, "upstream", "provisioning")
    assert _refused(env, bootstrap, "upstream", "events")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("missing", "resource"),
    [
        (("group", "Read"), "group"),
        (("topic", "Write", "events"), "events"),
        (("transactional-id", "Write"), "transactional id"),
    ],
    ids=["group read", "events write", "transactional id"],
)
def test_a_worker_missing_one_grant_stops_and_says_which(
    kafka_broker: SessionBroker,
    admin: KafkaAdminClient,
    tmp_path: Path,
    missing: tuple[str, ...],
    resource: str,
    transport: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without one of its grants the worker exits non-zero, naming the authorization failure,
    instead of retrying for ever or carrying on without it (both transports)."""
    bootstrap = sasl_bootstrap(kafka_broker)
    env = session_env(kafka_broker, tmp_path)
    env.transport = transport
    bindings = _bindings(least_privilege(_settings(env)))
    kind, operation, *topic = missing

    def dropped(acl: ACL) -> bool:
        pattern = acl.resource_pattern
        return (
            acl.principal == f"User:{USERS['worker']}"
            and pattern.resource_type == RESOURCE_TYPES[kind]
            and acl.operation == ACLOperation[operation.upper()]
            and (not topic or pattern.resource_name == env.topic(topic[0]))
        )

    kept = [acl for acl in bindings if not dropped(acl)]
    assert len(kept) == len(bindings) - 1
    _grant(admin, kept)
    _worker_env(env, bootstrap)
    steps = chain(30, 2, 31)
    try:
        worker = env.start()
        _publish_as_upstream(env, bootstrap, steps, 0)
        _publish_as_upstream(env, bootstrap, steps, 1)
        started = time.monotonic()
        try:
            wait_for(lambda: worker.poll() is not None, "the worker to stop")
        except AssertionError as exc:  # still running: retrying a refusal? say what it did
            raise AssertionError(f"{exc}; log tail:\n{env.log_text()[-3000:]}") from exc
        took = time.monotonic() - started
    finally:
        env.stop_all()
    assert worker.returncode not in (0, None)
    last = env.log_text().strip().splitlines()[-1]
    assert re.search("authorization_?failed", last, re.IGNORECASE), env.log_text()[-3000:]
    with capsys.disabled():
        print(f"\n[acls] {transport} without {resource}: {worker.returncode}, {took:.1f} s: {last}")
