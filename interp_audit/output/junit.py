"""JUnit XML: one test case per check, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def _verdict(c: dict[str, Any]) -> str:
    return c.get("verdict") or ("pass" if c["passed"] else "fail")


def render_junit(report: dict[str, Any]) -> str:
    """One test case per check; fail and inconclusive checks are failures (the gate's default),
    typed by their verdict so a dashboard can tell them apart."""
    checks = report["checks"]
    suite = ET.Element(
        "testsuite",
        name=f"interp_audit.{report['name']}",
        tests=str(len(checks)),
        failures=str(sum(_verdict(c) != "pass" for c in checks)),
        errors="0",
    )
    ts = report.get("provenance", {}).get("timestamp")
    if ts:
        suite.set("timestamp", ts)
    for c in checks:
        case = ET.SubElement(
            suite, "testcase", classname=f"interp_audit.{c['kind']}", name=c["name"]
        )
        out = ET.SubElement(case, "system-out")
        verdict = _verdict(c)
        out.text = (
            f"verdict={verdict} statistic={c['statistic']:.6g} "
            f"ci=[{c['ci'][0]:.6g}, {c['ci'][1]:.6g}] threshold={c['threshold']}\n"
            f"{c['message']}\n{c.get('reason', '')}"
        )
        if verdict != "pass":
            fail = ET.SubElement(
                case, "failure", message=c["message"], type=f"{verdict}:{c['kind']}"
            )
            fail.text = f"{verdict}: {c.get('reason', '')}\n{c['message']}"
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
