#!/usr/bin/env python3
"""Print a `sha256sum -c` checksum list for the files a syncproof manifest lists.

Usage:  python3 checksums.py PACK > SHA256SUMS
        (cd PACK && sha256sum --strict -c -) < SHA256SUMS

Reads PACK/manifest.json (standard library only, no syncproof code) and prints
one "<sha256>  <path>" line per entry of its "files" array. Refuses (exit 1)
paths that are absolute, contain "..", ".", empty components, backslashes or
control characters, so the list can never make sha256sum read outside PACK.

Only use the list after `openssl pkeyutl -verify ... -in manifest.json
-sigfile manifest.sig` has succeeded: until then the manifest is untrusted.
"""
import json
import re
import sys


def safe(path):
    if not path or path.startswith("/") or "\\" in path:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: checksums.py PACK")
    with open(f"{sys.argv[1]}/manifest.json", "rb") as f:
        manifest = json.load(f)
    if manifest.get("format") != "syncproof-manifest/v1":
        sys.exit("manifest.json: unsupported format")
    for entry in manifest["files"]:
        path, digest = entry["path"], entry["sha256"]
        if not safe(path):
            sys.exit(f"manifest.json: unsafe path {path!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            sys.exit(f"manifest.json: bad sha256 for {path!r}")
        print(f"{digest}  {path}")


if __name__ == "__main__":
    main()
