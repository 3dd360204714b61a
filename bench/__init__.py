"""Benchmarks and the synthetic data they run on (outside the default test run)."""
