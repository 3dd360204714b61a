"""The least-privilege ACLs: SECURITY.md shows them, and a refusal is never retried."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from processor import acls
from processor.errors import TransportError
from processor.transport.confluent._common import mapped_errors

SECURITY = Path(__file__).resolve().parents[2] / "SECURITY.md"


def test_security_md_shows_the_acls_of_the_default_settings() -> None:
    """SECURITY.md's commands equal `python -m processor.acls` for the defaults (--update)."""
    assert acls.embedded_in(SECURITY) == acls.render(acls.least_privilege(acls.DEFAULTS))


def test_the_worker_may_read_its_inputs_and_write_only_its_outputs() -> None:
    """The worker writes no input topic, and nobody but the worker writes an output."""
    grants = acls.least_privilege(acls.DEFAULTS)
    writes = {(g.role, n) for g in grants if "Write" in g.operations for n in g.names}
    s = acls.DEFAULTS
    assert {n for role, n in writes if role == "worker"} == {
        s.topic_events,
        s.topic_remediations,
        s.topic_dlq,
        s.topic_changelog,
        f"{s.group_id}-",  # its transactional ids
    }
    assert {n for role, n in writes if role == "provisioning"} == {s.topic_provisioning}
    assert {n for role, n in writes if role == "upstream"} == {
        s.topic_sources,
        s.topic_entitlements,
        s.topic_aggregations,
    }


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
    ],
)
def test_a_refusal_that_fails_a_transaction_is_not_retried(code: int) -> None:
    """librdkafka flags a refused topic as "abort the transaction": still never retriable."""
    with pytest.raises(TransportError) as info, mapped_errors("commit transaction"):
        raise KafkaException(KafkaError(code, txn_requires_abort=True))
    assert info.value.retriable is False


def test_kafka_python_send_refused_after_a_failed_transaction_names_the_cause() -> None:
    """kafka-python's bare "previous request failed" error carries the refusal: it decides."""
    from kafka.errors import KafkaError as KpError
    from kafka.errors import TopicAuthorizationFailedError

    from processor.transport.kafka._common import mapped_errors as kafka_mapped_errors

    wrapped = KpError("a previous transactional request failed", TopicAuthorizationFailedError())
    with pytest.raises(TransportError) as info, kafka_mapped_errors("send"):
        raise wrapped
    assert str(info.value) == "send failed: TopicAuthorizationFailedError"
    assert info.value.retriable is False
    with pytest.raises(TransportError) as bare, kafka_mapped_errors("send"):
        raise KpError("no broker answered")
    assert bare.value.retriable is True
