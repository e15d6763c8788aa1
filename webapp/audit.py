"""`python -m webapp.audit`: pip-audit over the installed dependencies, with written exceptions.

Known-vulnerable versions fail the build unless `[tool.guardchat.audit] ignore` in pyproject.toml
names the advisory with a reason. If the vulnerability service cannot be reached at all (machines
without internet beyond the package index), it says so loudly instead of claiming a clean bill.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def load_exceptions(path: Path = PYPROJECT) -> dict[str, str]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = data.get("tool", {}).get("guardchat", {}).get("audit", {}).get("ignore", [])
    exceptions: dict[str, str] = {}
    for entry in entries:
        if not entry.get("reason"):
            raise SystemExit(f"audit exception {entry.get('id')!r} has no reason")
        exceptions[entry["id"]] = entry["reason"]
    return exceptions


def evaluate(report: dict[str, Any], exceptions: dict[str, str]) -> tuple[list[str], list[str], int, int]:
    """(failures, waived, audited, skipped) for a pip-audit JSON report."""
    failures: list[str] = []
    waived: list[str] = []
    audited = skipped = 0
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            skipped += 1
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            ids = {vuln["id"], *vuln.get("aliases", [])}
            fixes = ", ".join(vuln.get("fix_versions", [])) or "none"
            line = f"{dep['name']} {dep['version']}: {vuln['id']} (fix: {fixes})"
            matched = ids & exceptions.keys()
            (waived if matched else failures).append(line)
    return failures, waived, audited, skipped


def main() -> int:
    exceptions = load_exceptions()
    proc = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--local", "--progress-spinner", "off", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(proc.stderr, file=sys.stderr)
        print("dependency audit: pip-audit produced no report", file=sys.stderr)
        return 1
    failures, waived, audited, skipped = evaluate(report, exceptions)
    for line in waived:
        print(f"dependency audit: waived (see pyproject.toml) {line}")
    if failures:
        print("dependency audit: known-vulnerable dependencies:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    if audited == 0 and skipped:
        print(
            f"dependency audit: WARNING: the vulnerability service was unreachable, {skipped} dependencies "
            "could not be checked (this machine only reaches the package index)",
            file=sys.stderr,
        )
        return 0
    print(f"dependency audit: {audited} dependencies checked, no known vulnerabilities ({skipped} skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
