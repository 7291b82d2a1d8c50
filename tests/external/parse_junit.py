#!/usr/bin/env python3
"""Parse a JUnit XML report with `junitparser`, as CI test-report tools do.

Usage:  python3 parse_junit.py REPORT.xml

Prints one JSON object on stdout: the totals junitparser computes from the
test cases themselves (not from the `tests=`/`failures=` attributes the file
claims), the attributes the file claims, and every suite with its cases and
each case's result. Exit 1 when the file does not parse.
"""
import json
import sys

from junitparser import Error, Failure, JUnitXml, Skipped


def result_of(case):
    """`passed`, `failure`, `skipped` or `error`, with the message."""
    for r in case.result:
        if isinstance(r, Failure):
            return "failure", r.message, r.type, r.text
        if isinstance(r, Skipped):
            return "skipped", r.message, None, r.text
        if isinstance(r, Error):
            return "error", r.message, r.type, r.text
    return "passed", None, None, None


def main(argv):
    if len(argv) != 2:
        print("usage: parse_junit.py REPORT.xml", file=sys.stderr)
        return 2
    try:
        xml = JUnitXml.fromfile(argv[1])
    except Exception as e:  # noqa: BLE001 - any parse error fails the check
        print(f"FAIL: cannot parse {argv[1]}: {e}")
        return 1
    suites = []
    totals = {"tests": 0, "failures": 0, "skipped": 0, "errors": 0}
    for suite in xml:
        cases = []
        for case in suite:
            result, message, rtype, text = result_of(case)
            cases.append({
                "classname": case.classname,
                "name": case.name,
                "result": result,
                "message": message,
                "type": rtype,
                "text": text,
            })
            totals["tests"] += 1
            key = {"failure": "failures", "skipped": "skipped", "error": "errors"}.get(result)
            if key:
                totals[key] += 1
        suites.append({
            "name": suite.name,
            "tests": suite.tests,
            "failures": suite.failures,
            "skipped": suite.skipped,
            "cases": cases,
        })
    print(json.dumps({
        "name": xml.name,
        "claimed": {"tests": xml.tests, "failures": xml.failures, "skipped": xml.skipped},
        "counted": totals,
        "suites": suites,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
