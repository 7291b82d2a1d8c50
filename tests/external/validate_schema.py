#!/usr/bin/env python3
"""Validate a JSON document against a JSON schema, as a consumer would.

Usage:  python3 validate_schema.py SCHEMA.json DOCUMENT.json

Uses the `jsonschema` package with the validator class the schema's
`$schema` names (draft-04 for SARIF 2.1.0, draft-07 for OSCAL 1.1.3), with one
change: the `pattern` keyword is evaluated with the `regex` module, because
OSCAL's patterns use Unicode property classes (`\\p{L}`, `\\p{N}`) that
Python's `re` cannot compile. The schema itself is not meta-validated (its
patterns would fail `re` there too).

Exit 0 and "OK: ..." when the document is valid; exit 1 with one line per
error (up to 50) otherwise.
"""
import json
import sys

import regex
from jsonschema import validators
from jsonschema.exceptions import ValidationError


def pattern(validator, patrn, instance, schema):
    """`pattern` with the `regex` module (Unicode classes supported)."""
    if not validator.is_type(instance, "string"):
        return
    if regex.search(patrn, instance) is None:
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    with open(argv[2], encoding="utf-8") as f:
        document = json.load(f)
    base = validators.validator_for(schema)
    validator_class = validators.extend(base, {"pattern": pattern})
    validator = validator_class(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        for e in errors[:50]:
            path = "/".join(str(p) for p in e.absolute_path)
            print(f"FAIL: /{path}: {e.message[:300]}")
            # A oneOf/anyOf root (OSCAL's complete schema) hides the real
            # cause in the error's context: show the deepest ones.
            for sub in sorted(e.context, key=lambda s: -len(s.absolute_path))[:10]:
                sub_path = "/".join(str(p) for p in sub.absolute_path)
                print(f"  because /{sub_path}: {sub.message[:300]}")
        print(f"FAIL: {len(errors)} error(s) against {argv[1]}")
        return 1
    print(f"OK: {argv[2]} is valid against {argv[1]} ({base.__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
