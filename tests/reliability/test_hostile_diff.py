"""Hostile input at ``ncd-processor diff``: exit 2 with FILE:LINE, no traceback, no values."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.cli import main
from tests.reliability.hostile import ODD_TEXT, hostile_values, nested

SOURCE = {
    "id": "src-d",
    "name": "Diff",
    "accountSchema": {"attributes": [{"name": "title"}]},
    "nativeChangeDetectionConfig": {"enabled": True, "allNonEntitlementAttributes": True},
}
GOOD = json.dumps({"nativeIdentity": "CN=a", "attributes": {"title": "x"}}).encode() + b"\n"
SECRET_VALUE = "SENTINEL-9f3c"


def _diff(tmp: Path, current: bytes, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    (tmp / "source.json").write_text(json.dumps(SOURCE))
    (tmp / "previous.jsonl").write_bytes(GOOD)
    (tmp / "current.jsonl").write_bytes(current)
    code = main(
        [
            "diff",
            "--source",
            str(tmp / "source.json"),
            str(tmp / "previous.jsonl"),
            str(tmp / "current.jsonl"),
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def _check_bad(code: int, out: str, err: str, path_line: str) -> None:
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert re.match(rf"{re.escape(path_line)}: \S", err), err


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 3), hostile_values())
def test_hostile_line_exits_2_naming_file_and_line(
    capsys: pytest.CaptureFixture[str], n_good: int, bad: bytes
) -> None:
    """A hostile line after good ones exits 2 with CURRENT:LINE: reason, or is a valid record."""
    with tempfile.TemporaryDirectory() as tmp:
        good = [GOOD.replace(b"CN=a", b"CN=g%d" % i) for i in range(n_good)]
        body = b"".join(good) + bad.replace(b"\n", b" ").replace(b"\r", b" ") + b"\n"
        code, out, err = _diff(Path(tmp), body, capsys)
        if code == 0:  # the hostile value happened to be a valid account line
            return
        # A blank hostile line is skipped; the error is then elsewhere, never a traceback.
        _check_bad(code, out, err, f"{Path(tmp) / 'current.jsonl'}:{len(good) + 1}")


@pytest.mark.parametrize(
    "line",
    [
        nested(100_000),
        b'{"nativeIdentity": "\\ud800", "attributes": {}}',
        b'{"nativeIdentity": "CN=a", "attributes": {"title": "' + SECRET_VALUE.encode() + b'"',
        json.dumps({"nativeIdentity": 5, "attributes": {"title": SECRET_VALUE}}).encode(),
        json.dumps({"nativeIdentity": "CN=a", "attributes": [SECRET_VALUE]}).encode(),
        json.dumps(
            {"nativeIdentity": "CN=a", "attributes": {"t": {"nested": SECRET_VALUE}}}
        ).encode(),
        b'{"nativeIdentity": "CN=a", "attributes": {"title": "' + b"y" * (10 << 20) + b'"}',
        b"\xff\xfe" + SECRET_VALUE.encode(),
    ],
    ids=[
        "deep",
        "surrogate",
        "truncated",
        "wrong-type",
        "list-attrs",
        "object-value",
        "10MB",
        "not-utf8",
    ],
)
def test_extreme_line_exits_2_without_echoing_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes
) -> None:
    """Extreme lines exit 2 with CURRENT:2: reason and never echo the value on stderr."""
    code, out, err = _diff(tmp_path, GOOD + line + b"\n", capsys)
    if line.startswith(b'{"nativeIdentity": "\\ud800"') and code == 0:
        pytest.fail("a lone surrogate identity was accepted")
    if b"y" * 100 in line and code == 0:
        return  # a 10 MB value on a valid line is a valid record: diff handles it
    _check_bad(code, out, err, f"{tmp_path / 'current.jsonl'}:2")
    assert SECRET_VALUE not in err
    assert "yyyy" not in err


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ODD_TEXT, ODD_TEXT)
def test_odd_unicode_values_diff_cleanly(
    capsys: pytest.CaptureFixture[str], old: str, new: str
) -> None:
    """Valid records holding NUL, RTL, combining marks or emoji diff with exit 0 or exit 2."""
    with tempfile.TemporaryDirectory() as tmp:
        line = json.dumps({"nativeIdentity": "CN=a", "attributes": {"title": new}}).encode()
        code, _out, err = _diff(Path(tmp), line + b"\n", capsys)
        assert "Traceback" not in err
        assert code in (0, 2)
        if code == 2:
            assert new not in err or not new.strip()
