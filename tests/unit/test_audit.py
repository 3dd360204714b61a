"""The CI dependency audit's reading of pip-audit reports (scripts/audit.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit", ROOT / "scripts" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_reported_vulnerability_fails_the_audit() -> None:
    """One vulnerable package makes the audit exit 1 and names the advisory."""
    report = {
        "dependencies": [
            {"name": "ok", "version": "1.0", "vulns": []},
            {"name": "bad", "version": "2.0", "vulns": [{"id": "GHSA-x", "fix_versions": ["2.1"]}]},
        ]
    }
    code, lines = _audit().verdict(report, strict=False)
    assert code == 1
    assert any("bad 2.0: GHSA-x (2.1)" in line for line in lines)


def test_a_clean_report_passes() -> None:
    """Audited packages without advisories pass."""
    report = {"dependencies": [{"name": "ok", "version": "1.0", "vulns": []}]}
    assert _audit().verdict(report, strict=True)[0] == 0


def test_unaudited_packages_fail_only_when_strict() -> None:
    """Packages the service could not audit are reported, and fail the run in strict mode."""
    report = {"dependencies": [{"name": "x", "skip_reason": "Dependency not found on PyPI"}]}
    audit = _audit()
    code, lines = audit.verdict(report, strict=False)
    assert code == 0
    assert any("nothing was audited" in line for line in lines)
    assert audit.verdict(report, strict=True)[0] == 1
