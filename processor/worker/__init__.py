"""The streaming worker's application layer, with no Kafka imports.

Per-partition decisions (``partition`` and the flows it delegates to, ``decision``, the
registry of sources and catalogs) and the units the loop in ``processor.runner`` sequences:
``checkpoint`` (one transaction per batch, then local state), ``partitions`` and ``restore``
(assignment marks, the loop restores), ``hold`` (provisioning before aggregation), ``batch``
and ``outputs`` (deciding a batch, the records it writes), ``config_follower``, ``tally``
(one count per batch) and ``clock``."""
