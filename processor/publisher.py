"""The publisher upstream jobs use: one snapshot becomes one aggregation on the topics.

It writes the source descriptor (``ncd.sources``, key sourceId) and catalog
(``ncd.entitlements``, key ``sourceId/attribute/value``) first and waits for them, then the
``aggregation.started`` marker to every partition of ``ncd.aggregations``, then every
account keyed ``sourceId/<uuid or nativeIdentity>`` (the default partitioner spreads them),
then the ``aggregation.completed`` marker to every partition. One producer with idempotence
keeps that order within each partition, so every partition sees its accounts between the
two markers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processor import codec
from processor.keys import account_record_key, catalog_key, marker_key, record_key
from processor.models import (
    Account,
    AggregationMode,
    AggregationStatus,
    CatalogEntry,
    ProvisioningRecord,
    SourceDescriptor,
)
from processor.transport import OutRecord, Producer


def now_rfc3339() -> str:
    """The current instant as RFC 3339 with millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: Records an aggregation is flushed after: flush failures surface early and nothing waits
#: in the producer long enough to expire.
FLUSH_EVERY = 10_000


@dataclass(frozen=True)
class Topics:
    sources: str = "ncd.sources"
    entitlements: str = "ncd.entitlements"
    aggregations: str = "ncd.aggregations"
    provisioning: str = "ncd.provisioning"


class Publisher:
    """Publishes sources, catalogs, aggregations and provisioning records."""

    def __init__(
        self,
        producer: Producer,
        partitions: int,
        topics: Topics | None = None,
        *,
        clock: Callable[[], str] = now_rfc3339,
    ) -> None:
        self._producer = producer
        self._partitions = partitions
        self._topics = topics or Topics()
        self._clock = clock

    def publish_source(self, source: SourceDescriptor) -> None:
        """Publish (or replace) a source descriptor and wait until it is written."""
        value = codec.dumps(source.model_dump(mode="json", exclude_none=True))
        self._producer.send(OutRecord(self._topics.sources, source.id.encode(), value))
        self._producer.flush()

    def remove_source(self, source_id: str) -> None:
        """Publish a tombstone for a source."""
        self._producer.send(OutRecord(self._topics.sources, source_id.encode(), None))
        self._producer.flush()

    def publish_catalog(self, source_id: str, entries: Iterable[CatalogEntry]) -> int:
        """Publish catalog entries for a source; returns how many."""
        count = 0
        for entry in entries:
            body = entry.model_dump(mode="json", exclude_none=True)
            body["sourceId"] = source_id
            key = catalog_key(source_id, entry.attribute, entry.value)
            self._producer.send(OutRecord(self._topics.entitlements, key, codec.dumps(body)))
            count += 1
        self._producer.flush()
        return count

    def publish_aggregation(
        self,
        source_id: str,
        accounts: Iterable[Account],
        *,
        mode: AggregationMode = AggregationMode.FULL,
        status: AggregationStatus = AggregationStatus.COMPLETED,
        aggregation_id: str | None = None,
        started_at: str | None = None,
        deleted: Iterable[Account] = (),
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Publish one aggregation; returns its id. ``deleted`` only in DELTA mode."""
        started = started_at or self._clock()
        agg_id = aggregation_id or _aggregation_id(source_id, started)
        base = {"sourceId": source_id, "aggregationId": agg_id}
        self._markers({"type": "aggregation.started", **base, "startedAt": started, "mode": mode})
        count = 0
        for account, flag in _flagged(accounts, deleted):
            body = {
                "type": "account",
                **base,
                "account": account.model_dump(mode="json", exclude_none=True),
                "deleted": flag,
            }
            key = account_record_key(source_id, account)
            self._producer.send(OutRecord(self._topics.aggregations, key, codec.dumps(body)))
            count += 1
            if count % FLUSH_EVERY == 0:
                # Bounded in flight: a slow broker must not let queued records expire
                # (the producer's delivery timeout) while millions more are queued behind.
                self._producer.flush()
            if progress is not None:
                progress(count)
        self._markers(
            {"type": "aggregation.completed", **base, "status": status, "accountCount": count}
        )
        self._producer.flush()
        return agg_id

    def publish_provisioning(
        self,
        records: Iterable[ProvisioningRecord],
        uuid_of: Callable[[str], str | None] = lambda _native_identity: None,
    ) -> int:
        """Publish provisioning records keyed like their account; returns how many.

        An account's records are keyed by its uuid when it has one: the record's
        ``compound.uniqueId``, else ``uuid_of`` maps the record's target nativeIdentity to the
        uuid, so that the provisioning record lands on the partition of the account's state.
        """
        count = 0
        for record in records:
            target = record.target() or ""
            key = record_key(record.sourceId, record.unique_id() or uuid_of(target), target)
            value = codec.dumps(record.model_dump(mode="json", exclude_none=True))
            self._producer.send(OutRecord(self._topics.provisioning, key, value))
            count += 1
        self._producer.flush()
        return count

    def _markers(self, body: dict[str, Any]) -> None:
        value = codec.dumps(body)
        key = marker_key(body["sourceId"], body["aggregationId"])
        for partition in range(self._partitions):
            self._producer.send(
                OutRecord(self._topics.aggregations, key, value, partition=partition)
            )


def _flagged(
    accounts: Iterable[Account], deleted: Iterable[Account]
) -> Iterable[tuple[Account, bool]]:
    for account in accounts:
        yield account, False
    for account in deleted:
        yield account, True


def _aggregation_id(source_id: str, started_at: str) -> str:
    digest = hashlib.sha256(f"{source_id}\x00{started_at}".encode()).hexdigest()[:16]
    return f"agg-{digest}"
