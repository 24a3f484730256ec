"""JUnit XML: one test case per check, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def render_junit(report: dict[str, Any]) -> str:
    checks = report["checks"]
    suite = ET.Element(
        "testsuite",
        name=f"interp_audit.{report['name']}",
        tests=str(len(checks)),
        failures=str(sum(not c["passed"] for c in checks)),
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
        out.text = (
            f"statistic={c['statistic']:.6g} ci=[{c['ci'][0]:.6g}, {c['ci'][1]:.6g}] "
            f"threshold={c['threshold']}\n{c['message']}"
        )
        if not c["passed"]:
            fail = ET.SubElement(case, "failure", message=c["message"], type=c["kind"])
            fail.text = c["message"]
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
