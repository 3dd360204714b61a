"""kafka-python implementations of ``processor.transport``; the only package importing ``kafka``.

What Tansu 0.6.0 (the test broker, memory storage) does and does not do, measured with
kafka-python 3.0.12 (see tests/contract/test_transport_contract.py):

* transactions commit and abort; an open transaction is hidden from read_committed
  readers until it ends (the last stable offset works);
* aborted records are NOT hidden from read_committed readers: Tansu's fetch response
  carries an empty aborted-transactions list, so the client cannot filter them.
  Real Kafka hides them. Tests that depend on it check ``broker.hides_aborted``;
* send_offsets_to_transaction works: the offsets become the group's committed offsets
  on commit and stay unchanged on abort;
* topics are created with ``cleanup.policy=compact`` without complaint, but describe
  configs returns no entries, so the policy cannot be read back (nor compaction seen);
* consumer groups rebalance between two members with the range assignor; a join
  takes about half the session timeout (3 s at 6 s);
* a second producer with the same transactional id fences the first
  (``ProducerFencedError``, not retriable, on its next transactional call);
* replication factor -1 (broker default) is accepted;
* ListOffsets (``end_offsets``) answers the base offset of the partition's LAST BATCH
  plus one: right when that batch is one record (a transaction marker, so partitions
  written by a transactional sink are fine), too small after a multi-record batch of a
  plain producer (12 records in one batch give end offset 1). The fetch high
  watermark is right. Readers of plain-produced topics on Tansu must not trust it;
* rebalances are slow and erratic when one thread polls both members in turn
  (5-60 s); with each member polling in its own thread they take 4-7 s.

kafka-python 3.0 itself runs rebalance listeners on its IO thread; see ``consumer``.
"""

from processor.transport.kafka.admin import KafkaAdmin
from processor.transport.kafka.consumer import KafkaGroupConsumer
from processor.transport.kafka.reader import KafkaPartitionReader
from processor.transport.kafka.sink import KafkaTransactionalSink
from processor.transport.kafka.transport import KafkaTransport

__all__ = [
    "KafkaAdmin",
    "KafkaGroupConsumer",
    "KafkaPartitionReader",
    "KafkaTransactionalSink",
    "KafkaTransport",
]
