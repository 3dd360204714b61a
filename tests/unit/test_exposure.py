"""Exposure: the compose file publishes its ports on the loopback interface only."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def test_compose_publishes_every_port_on_127_0_0_1_only() -> None:
    """Kafka's unauthenticated listener, the metrics and Prometheus reach this host alone."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = [str(p) for s in services.values() for p in s.get("ports", [])]
    assert published, "compose publishes no port: this test checks nothing"
    assert all(p.startswith("127.0.0.1:") for p in published), published
