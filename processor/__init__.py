"""ncd-processor: native change detection event processor."""
