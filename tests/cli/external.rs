//! Verifying packs with tools that share no code with syncproof: OpenSSL
//! (raw Ed25519 signature over `manifest.json`), `sha256sum -c` (file
//! digests) and Python `securesystemslib` (the DSSE envelope).
//!
//! These tests need `openssl` (≥ 3.0), `sha256sum`, `python3` and the packages
//! in `tests/requirements.txt`. They fail, never skip, when a tool is
//! missing: CI installs them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::verify::{key_fixture, write_pack, TEST_KEY_ID};

/// Path of a script in `tests/external/`.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/external")
        .join(name)
}

/// Runs a command, failing the test (not skipping) if it cannot be started.
fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run {cmd:?} (is it installed? CI must install it): {e}"),
    }
}

/// `openssl pkeyutl -verify` of `manifest.sig` over `manifest.json`.
fn openssl_verify(pack: &Path, pubkey: &Path) -> Output {
    run(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(pubkey)
        .arg("-rawin")
        .arg("-in")
        .arg(pack.join("manifest.json"))
        .arg("-sigfile")
        .arg(pack.join("manifest.sig")))
}

/// `python3 checksums.py PACK | (cd PACK && sha256sum --strict -c -)`.
fn sha256sum_check(pack: &Path) -> Output {
    let list = run(Command::new("python3")
        .arg(script("checksums.py"))
        .arg(pack));
    assert!(list.status.success(), "{list:?}");
    let mut child = Command::new("sha256sum")
        .args(["--strict", "-c", "-"])
        .current_dir(pack)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sha256sum (CI must install it): {e}"));
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&list.stdout).unwrap();
    child.wait_with_output().unwrap()
}

/// `python3 verify_dsse.py PACK PUBKEY KEY_ID`.
fn dsse_verify(pack: &Path, pubkey: &Path, key_id: &str) -> Output {
    run(Command::new("python3")
        .arg(script("verify_dsse.py"))
        .arg(pack)
        .arg(pubkey)
        .arg(key_id))
}

/// Text of both output streams.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn openssl_version_is_at_least_3() {
    let out = run(Command::new("openssl").arg("version"));
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    let major: u32 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 3,
        "need OpenSSL >= 3.0 for -rawin Ed25519: {version}"
    );
}

#[test]
fn openssl_key_id_matches() {
    let der = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(key_fixture("test.pub.pem")));
    assert!(der.status.success(), "{der:?}");
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&der.stdout)), TEST_KEY_ID);
}

#[test]
fn openssl_verifies_manifest_signature() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let out = openssl_verify(&pack, &key_fixture("test.pub.pem"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Signature Verified Successfully"));
}

#[test]
fn openssl_rejects_edited_manifest_and_other_key() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let out = openssl_verify(&pack, &key_fixture("other.pub.pem"));
    assert!(!out.status.success(), "{}", text(&out));

    let path = pack.join("manifest.json");
    let edited = fs::read_to_string(&path)
        .unwrap()
        .replace("2025-03-01", "2025-04-01");
    fs::write(&path, edited).unwrap();
    let out = openssl_verify(&pack, &key_fixture("test.pub.pem"));
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn sha256sum_checks_listed_files() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let out = sha256sum_check(&pack);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("sarif/syncproof.sarif: OK"),
        "{}",
        text(&out)
    );
}

#[test]
fn sha256sum_rejects_tampered_file() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    fs::write(pack.join("report.md"), "# Evidence\n\nAll dirty.\n").unwrap();
    let out = sha256sum_check(&pack);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("report.md: FAILED"), "{}", text(&out));
}

#[test]
fn checksum_script_refuses_unsafe_paths() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let path = pack.join("manifest.json");
    let edited = fs::read_to_string(&path)
        .unwrap()
        .replace("\"report.md\"", "\"../report.md\"");
    fs::write(&path, edited).unwrap();
    let out = run(Command::new("python3")
        .arg(script("checksums.py"))
        .arg(&pack));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("unsafe path"), "{}", text(&out));
}

#[test]
fn securesystemslib_verifies_dsse_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let out = dsse_verify(&pack, &key_fixture("test.pub.pem"), TEST_KEY_ID);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("OK: 4 subjects verified"),
        "{}",
        text(&out)
    );
}

#[test]
fn securesystemslib_rejects_tampered_file_added_file_and_other_key() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    fs::write(pack.join("report.json"), "{\"findings\":[1]}\n").unwrap();
    let out = dsse_verify(&pack, &key_fixture("test.pub.pem"), TEST_KEY_ID);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("report.json: sha256 expected"),
        "{}",
        text(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    fs::write(pack.join("extra.txt"), "x").unwrap();
    let out = dsse_verify(&pack, &key_fixture("test.pub.pem"), TEST_KEY_ID);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("extra.txt: file in pack is not a subject"));

    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let out = dsse_verify(&pack, &key_fixture("other.pub.pem"), "");
    assert!(!out.status.success(), "{}", text(&out));
    let out = run(Command::new("python3")
        .arg(script("verify_dsse.py"))
        .arg(&pack)
        .arg(key_fixture("other.pub.pem")));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("signature does not verify"),
        "{}",
        text(&out)
    );
}

#[test]
fn securesystemslib_rejects_tampered_envelope_payload() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let path = pack.join("attestation.dsse.json");
    let mut env: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let changed = String::from_utf8(payload)
        .unwrap()
        .replace("\"pass\"", "\"fail\"");
    env["payload"] = b64.encode(changed).into();
    fs::write(&path, serde_json::to_vec(&env).unwrap()).unwrap();
    let out = dsse_verify(&pack, &key_fixture("test.pub.pem"), TEST_KEY_ID);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("signature does not verify"),
        "{}",
        text(&out)
    );
}
