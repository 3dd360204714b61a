"""The message-broker boundary: one package for everything that talks to Kafka.

Layout (docs/decisions.md, "One transport package"):

* ``records`` - plain values (partitions, records, topic specs, client settings);
* ``protocols`` - the small protocols the worker codes against;
* ``base`` - what every client does the same way: the sink's transaction state machine,
  ensuring topics, the client options in Kafka's own names, record conversion;
* ``memory`` - the in-memory twin used by unit tests;
* ``kafka`` (kafka-python, the default) and ``confluent`` (librdkafka) - thin adapters,
  the only packages importing their client;
* ``factory`` - the transport ``NCD_TRANSPORT`` names.

This module re-exports ``records`` and ``protocols`` and imports no client, so that
``from processor.transport import TP`` stays cheap.
"""

from processor.transport.protocols import (
    Admin,
    GroupConsumer,
    PartitionReader,
    Producer,
    RebalanceListener,
    TransactionalSink,
    Transport,
)
from processor.transport.records import (
    AUTH_HINT,
    DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_MAX_PARTITION_FETCH_BYTES,
    LAG_UNKNOWN,
    START_HINT,
    TP,
    ClientSettings,
    InRecord,
    OutRecord,
    SaslMechanism,
    SecurityProtocol,
    TopicSpec,
    put_back,
)

__all__ = [
    "AUTH_HINT",
    "DEFAULT_FETCH_MAX_BYTES",
    "DEFAULT_MAX_PARTITION_FETCH_BYTES",
    "LAG_UNKNOWN",
    "START_HINT",
    "TP",
    "Admin",
    "ClientSettings",
    "GroupConsumer",
    "InRecord",
    "OutRecord",
    "PartitionReader",
    "Producer",
    "RebalanceListener",
    "SaslMechanism",
    "SecurityProtocol",
    "TopicSpec",
    "TransactionalSink",
    "Transport",
    "put_back",
]
