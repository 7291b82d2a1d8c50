#!/usr/bin/env python3
"""Load an OSCAL Assessment Results document with NIST-model tooling.

Usage:  python3 load_oscal.py ASSESSMENT-RESULTS.json

(trestle picks the parser from the extension: the name must end in `.json`.)

Reads the file with compliance-trestle's pydantic OSCAL model
(`trestle.oscal.assessment_results.AssessmentResults.oscal_read`), which
checks every field's type and pattern the way GRC pipelines built on trestle
do, then prints a JSON summary on stdout: the document uuid, and per result
its reviewed control ids, observation count, findings by state, and risks by
status. Exit 1 when the file does not load.
"""
import json
import pathlib
import sys

from trestle.oscal.assessment_results import AssessmentResults


def plain(value):
    """The plain value inside trestle's pydantic root models and enums."""
    for _ in range(5):
        inner = getattr(value, "root", getattr(value, "__root__", None))
        if inner is None:
            break
        value = inner
    return str(getattr(value, "value", value))


def main(argv):
    if len(argv) != 2:
        print("usage: load_oscal.py ASSESSMENT-RESULTS.json", file=sys.stderr)
        return 2
    try:
        ar = AssessmentResults.oscal_read(pathlib.Path(argv[1]))
    except Exception as e:  # noqa: BLE001 - any load error fails the check
        print(f"FAIL: trestle cannot load {argv[1]}: {e}")
        return 1
    if ar is None:
        print(f"FAIL: trestle read nothing from {argv[1]}")
        return 1
    results = []
    for r in ar.results:
        controls = []
        for sel in r.reviewed_controls.control_selections:
            controls.extend(c.control_id for c in (sel.include_controls or []))
        states = {}
        for f in r.findings or []:
            state = plain(f.target.status.state)
            states[state] = states.get(state, 0) + 1
        risks = {}
        for k in r.risks or []:
            status = plain(k.status)
            risks[status] = risks.get(status, 0) + 1
        results.append({
            "uuid": str(r.uuid),
            "controls": controls,
            "observations": len(r.observations or []),
            "findings": states,
            "risks": risks,
        })
    print(json.dumps({
        "uuid": str(ar.uuid),
        "oscal_version": plain(ar.metadata.oscal_version),
        "results": results,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
