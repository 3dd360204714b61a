"""Dependency audit for CI: pip-audit over the project's environment.

Fails (exit 1) when pip-audit reports a known vulnerability. Packages pip-audit could not
audit (its vulnerability service unreachable, or a mirror without PyPI's per-version JSON API,
as on the machines this project is built on) are reported on stderr; they fail the run only
with ``AUDIT_STRICT=1``, for networks where the service answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def verdict(report: dict[str, Any], strict: bool) -> tuple[int, list[str]]:
    """Exit code and the lines to print for one pip-audit JSON report."""
    lines: list[str] = []
    vulnerable = skipped = 0
    deps = report.get("dependencies", [])
    for dep in deps:
        for vuln in dep.get("vulns", []):
            vulnerable += 1
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            lines.append(
                f"VULNERABLE {dep['name']} {dep.get('version', '?')}: {vuln['id']} ({fixes})"
            )
        if "skip_reason" in dep:
            skipped += 1
    audited = len(deps) - skipped
    lines.append(
        f"pip-audit: {audited} package(s) audited, {vulnerable} vulnerability(ies), "
        f"{skipped} not audited"
    )
    if skipped and not audited:
        lines.append(
            "pip-audit: the vulnerability service could not be reached from this network; "
            "nothing was audited (set AUDIT_STRICT=1 where it can be reached)"
        )
    if vulnerable:
        return 1, lines
    if skipped and strict:
        return 1, lines
    return 0, lines


def main() -> int:
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "pip-audit"),
        "--progress-spinner",
        "off",
        "--skip-editable",
        "--format",
        "json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        # No report at all: the tool itself failed (e.g. no network). Say so, do not hide it.
        sys.stderr.write("pip-audit: no report; its error output follows\n")
        sys.stderr.write(done.stderr[-2000:])
        return 1 if os.environ.get("AUDIT_STRICT") == "1" else 0
    code, lines = verdict(report, strict=os.environ.get("AUDIT_STRICT") == "1")
    sys.stderr.write("\n".join(lines) + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
