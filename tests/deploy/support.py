"""Helpers of the deploy tests: missing tools fail the test in CI and skip it, loudly, elsewhere."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    """CI sets CI=true; there every tool the deploy tests need must be at hand."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Fail in CI (scripts/deploy_test.sh installs what is needed); skip, saying why, elsewhere."""
    message = f"DEPLOY TEST NOT RUN: {reason} (scripts/deploy_test.sh installs what it needs)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def tool(name: str) -> str:
    """The path of a command-line tool, or fail / skip as ``missing`` does."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    assert path is not None
    return path


def load_smoke() -> ModuleType:
    """scripts/deploy_smoke.py as a module (the smoke test a user runs as a script)."""
    name = "deploy_smoke"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "deploy_smoke.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module
