"""deploy/'s configuration files checked by the tools that read them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import tool

pytestmark = pytest.mark.deploy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """promtool accepts deploy/prometheus/prometheus.yml and rejects it with an unknown key."""
    config = DEPLOY / "prometheus" / "prometheus.yml"
    done = _promtool_check(config)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = yaml.safe_load(config.read_text())
    broken["scrape_configs"][0]["scrape_intervall"] = "5s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(broken))
    done = _promtool_check(tmp_path / "prometheus.yml")
    assert done.returncode != 0
    assert "scrape_intervall" in done.stdout + done.stderr
