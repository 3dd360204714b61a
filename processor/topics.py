"""The topics the worker and the publisher create, sized from what already exists.

Like Kafka Streams, the worker takes its partition count from its input: when the
aggregations topic exists, its count sizes every topic created for it (changelog, events,
remediations, dead letters, and provisioning when missing). The ``partitions`` setting
(``--partitions``) sizes topics only when the aggregations topic is created from nothing.
Existing output and config topics are used as they are.

Only a real co-partitioning conflict is refused: partition ``p`` of the provisioning topic
and of the changelog belong with partition ``p`` of the aggregations topic (one account's
records and state meet there), so both must have as many partitions as it.
"""

from __future__ import annotations

from dataclasses import replace

from processor.config import Settings
from processor.errors import ConfigError
from processor.transport import Admin


def ensure_topics(admin: Admin, settings: Settings) -> int:
    """Create the missing topics to match the aggregations topic; return its partition count.

    Raises ``ConfigError`` (one line saying how to fix it) when the provisioning topic or
    the changelog exists with another partition count than the aggregations topic.
    """
    existing = _existing(admin, settings)
    partitions = _checked(settings, existing)
    admin.ensure_topics(
        [
            replace(spec, partitions=existing[spec.name] or spec.partitions)
            for spec in settings.topic_specs(partitions)
        ]
    )
    return partitions


def check_topics(admin: Admin, settings: Settings) -> int:
    """Check existing topics without creating any (``NCD_CREATE_TOPICS=false``).

    Returns the aggregations topic's partition count (the ``partitions`` setting while it
    is missing) and raises ``ConfigError`` on the same co-partitioning conflicts as
    :func:`ensure_topics`: topics created by someone else are held to the same rule.
    """
    return _checked(settings, _existing(admin, settings))


def _existing(admin: Admin, settings: Settings) -> dict[str, int | None]:
    return {spec.name: admin.partition_count(spec.name) for spec in settings.topic_specs()}


def _checked(settings: Settings, existing: dict[str, int | None]) -> int:
    partitions = existing[settings.topic_aggregations] or settings.partitions
    _check_co_partitioned(settings, existing, partitions)
    return partitions


def _check_co_partitioned(
    settings: Settings, existing: dict[str, int | None], partitions: int
) -> None:
    aggregations = settings.topic_aggregations
    fixes = {
        settings.topic_provisioning: (
            f"recreate it with {partitions} partitions (the publisher sends provisioning"
            " records by account, like aggregations)"
        ),
        settings.topic_changelog: (
            f"the worker's state was kept for another partition count: point"
            f" NCD_TOPIC_CHANGELOG at a new topic (or delete this one) and clear"
            f" NCD_STATE_DIR; the worker then creates it with {partitions} partitions"
        ),
    }
    for name, fix in fixes.items():
        count = existing[name]
        if count is not None and count != partitions:
            raise ConfigError(
                f"topic {name} has {count} partitions but {aggregations} has {partitions};"
                f" they must match: {fix}"
            )
