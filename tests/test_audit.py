from __future__ import annotations

from webapp.audit import evaluate


def report(*deps: dict[str, object]) -> dict[str, object]:
    return {"dependencies": list(deps)}


def test_vulnerable_dependency_fails_unless_waived() -> None:
    dep = {
        "name": "jinja2",
        "version": "2.4.1",
        "vulns": [{"id": "PYSEC-1", "aliases": ["CVE-9"], "fix_versions": ["2.11"]}],
    }
    failures, waived, audited, _ = evaluate(report(dep), {})
    assert audited == 1 and failures == ["jinja2 2.4.1: PYSEC-1 (fix: 2.11)"] and waived == []
    failures, waived, _, _ = evaluate(report(dep), {"CVE-9": "not reachable from our code"})
    assert failures == [] and len(waived) == 1


def test_unreachable_service_is_counted_as_skipped_not_clean() -> None:
    failures, _, audited, skipped = evaluate(report({"name": "x", "skip_reason": "not found"}), {})
    assert (failures, audited, skipped) == ([], 0, 1)
