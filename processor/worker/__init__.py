"""The streaming worker's application layer: per-partition aggregation logic and the registry
of sources and catalogs. No Kafka imports: the runner feeds it records and ships its outputs."""
