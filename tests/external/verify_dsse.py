#!/usr/bin/env python3
"""Verify a syncproof pack's DSSE attestation without syncproof.

Usage:  python3 verify_dsse.py PACK PUBKEY.pem [EXPECTED_KEY_ID]

Needs only `securesystemslib` and `cryptography` (see requirements.txt).

1. Loads the signer's SPKI PEM public key and computes its key id as the
   lowercase hex SHA-256 of the DER-encoded SubjectPublicKeyInfo. If
   EXPECTED_KEY_ID is given (a key id distributed out of band), it must match.
2. Parses PACK/attestation.dsse.json with securesystemslib's DSSE Envelope and
   verifies one Ed25519 signature by that key over the DSSE PAE.
3. Decodes the in-toto Statement v1 from the verified payload and checks its
   type, its predicate type, and that its subjects are exactly the regular
   files of PACK except manifest.sig and attestation.dsse.json, each with the
   SHA-256 it names. Symbolic links anywhere in PACK are refused.

Exit 0 and "OK: ..." when everything holds; exit 1 with one line per problem
otherwise.
"""
import hashlib
import json
import os
import stat
import sys

from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://syncproof.dev/assessment/v1"
UNSUBJECTED = {"manifest.sig", "attestation.dsse.json"}


def fail(problems):
    for p in problems:
        print(f"FAIL: {p}")
    sys.exit(1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def safe(name):
    if not name or name.startswith("/") or "\\" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def pack_files(pack, problems):
    """Relative paths of the regular files in pack; links are problems."""
    found = set()
    for root, dirs, files in os.walk(pack, followlinks=False):
        for name in dirs + files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, pack).replace(os.sep, "/")
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                problems.append(f"{rel}: symbolic link in pack")
            elif stat.S_ISREG(mode):
                found.add(rel)
            elif not stat.S_ISDIR(mode):
                problems.append(f"{rel}: special file in pack")
    return found


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: verify_dsse.py PACK PUBKEY.pem [EXPECTED_KEY_ID]")
    pack, pubkey_path = sys.argv[1], sys.argv[2]

    with open(pubkey_path, "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keyid = hashlib.sha256(der).hexdigest()
    if len(sys.argv) == 4 and sys.argv[3] != keyid:
        fail([f"public key id is {keyid}, expected {sys.argv[3]}"])
    key = SSlibKey.from_crypto(public, keyid=keyid, scheme="ed25519")

    with open(os.path.join(pack, "attestation.dsse.json"), "rb") as f:
        envelope = Envelope.from_dict(json.load(f))
    if envelope.payload_type != PAYLOAD_TYPE:
        fail([f"attestation.dsse.json: payload type {envelope.payload_type!r}"])
    try:
        envelope.verify([key], 1)
    except VerificationError:
        fail(["attestation.dsse.json: signature does not verify with the given public key"])

    # Only now is the payload trusted.
    statement = json.loads(envelope.payload)
    problems = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"statement _type is {statement.get('_type')!r}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"statement predicateType is {statement.get('predicateType')!r}")

    subjects = {}
    for subject in statement.get("subject", []):
        name, digest = subject["name"], subject["digest"].get("sha256")
        if name in subjects:
            problems.append(f"{name}: subject listed twice")
        subjects[name] = digest

    present = pack_files(pack, problems) - UNSUBJECTED
    for name, digest in sorted(subjects.items()):
        if not safe(name):
            problems.append(f"{name}: unsafe subject name")
        elif name not in present:
            problems.append(f"{name}: subject missing from pack (or not a regular file)")
        else:
            found = sha256_file(os.path.join(pack, name))
            if found != digest:
                problems.append(f"{name}: sha256 expected {digest}, found {found}")
    for name in sorted(present - set(subjects)):
        problems.append(f"{name}: file in pack is not a subject of the statement")
    if "manifest.json" not in subjects:
        problems.append("manifest.json: not a subject of the statement")

    if problems:
        fail(problems)
    print(f"OK: {len(subjects)} subjects verified, signed by key {keyid}")


if __name__ == "__main__":
    main()
