"""Composition: the ``Transport`` that ``NCD_TRANSPORT`` names."""

from __future__ import annotations

from processor.config import Settings
from processor.errors import ConfigError
from processor.transport import Transport


def make_transport(settings: Settings) -> Transport:
    """The Kafka transport chosen by ``settings.transport`` (kafka-python by default).

    Raises ``ConfigError`` naming ``NCD_TRANSPORT`` when ``confluent`` is chosen but
    confluent-kafka is not installed.
    """
    if settings.transport == "confluent":
        try:
            from processor.transport.confluent import ConfluentTransport
        except ImportError as exc:
            raise ConfigError(
                "NCD_TRANSPORT=confluent needs the confluent-kafka package: "
                "pip install 'ncd-processor[confluent]'"
            ) from exc
        return ConfluentTransport(settings.client())
    from processor.transport.kafka import KafkaTransport

    return KafkaTransport(settings.client())
