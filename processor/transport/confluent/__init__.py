"""confluent-kafka (librdkafka) implementations of ``processor.transport``.

The optional second transport (``NCD_TRANSPORT=confluent``, extra ``confluent``); the
only package importing ``confluent_kafka``. Same contracts as ``processor.transport.kafka``;
what both do the same way is in ``processor.transport.base``.

What Tansu 0.6.0 (the test broker, memory storage) does with librdkafka 2.12, measured
by tests/contract/test_transport_contract.py (run on both transports):

* idempotent and transactional producers work: init/begin/commit/abort, an open
  transaction is hidden from read_committed readers, and ``send_offsets_to_transaction``
  with a live member's group metadata commits the offsets with the transaction;
* as with kafka-python, aborted records are NOT hidden from read_committed readers,
  describe configs is empty, and ListOffsets under-reports the end of a partition whose
  last batch holds several plainly produced records; the high watermark a fetch
  reports (``get_watermark_offsets(cached=True)``, used by ``lag``) is right;
* a group join takes about half the session timeout, like kafka-python's.
"""

from processor.transport.confluent.admin import ConfluentAdmin
from processor.transport.confluent.consumer import ConfluentGroupConsumer
from processor.transport.confluent.reader import ConfluentPartitionReader
from processor.transport.confluent.sink import ConfluentTransactionalSink
from processor.transport.confluent.transport import ConfluentTransport

__all__ = [
    "ConfluentAdmin",
    "ConfluentGroupConsumer",
    "ConfluentPartitionReader",
    "ConfluentTransactionalSink",
    "ConfluentTransport",
]
