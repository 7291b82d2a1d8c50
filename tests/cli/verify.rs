//! `syncproof verify`: exit codes and messages for valid, tampered and
//! malformed packs. Packs are written with the library's `PackBuilder` and the
//! TEST ONLY key in `tests/fixtures/keys/`.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use syncproof::evidence::keys::PrivateKey;
use syncproof::evidence::pack::{PackBuilder, PackOptions};
use syncproof::ingest::model::InputFile;

/// Key id of `tests/fixtures/keys/test.pub.pem`.
pub(crate) const TEST_KEY_ID: &str =
    "637f23c0940ab9e4993e561e793de7fad41178147318fd0591999cf2a240093b";

/// Path of a file in `tests/fixtures/keys/`.
pub(crate) fn key_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

/// The TEST ONLY signing key (parsed from text: git checks it out as 0644,
/// which `from_pem_file` rightly refuses).
pub(crate) fn test_key() -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&fs::read_to_string(key_fixture("test.key.pem")).unwrap()).unwrap()
}

/// Writes a small collection (two files) under `dir/collection`.
pub(crate) fn write_collection(dir: &Path) -> PathBuf {
    let collection = dir.join("collection");
    fs::create_dir_all(collection.join("logs")).unwrap();
    fs::write(collection.join("collection.yaml"), "name: test\n").unwrap();
    fs::write(collection.join("logs/sync.jsonl"), "{\"id\":1}\n").unwrap();
    collection
}

/// Writes a pack signed by the test key to `dir/pack` and returns its path.
pub(crate) fn write_pack(dir: &Path) -> PathBuf {
    let input = |path: &str, bytes: &[u8], kind: &str| {
        let (size, sha256) = syncproof::evidence::manifest::digest_bytes(bytes);
        InputFile {
            path: path.into(),
            size,
            sha256,
            kind: kind.into(),
        }
    };
    let mut builder = PackBuilder::new();
    builder
        .add("report.json", b"{\"findings\":[]}\n".to_vec())
        .unwrap();
    builder
        .add("report.md", b"# Evidence\n\nAll clean.\n".to_vec())
        .unwrap();
    builder
        .add(
            "sarif/syncproof.sarif",
            b"{\"version\":\"2.1.0\"}\n".to_vec(),
        )
        .unwrap();
    let options = PackOptions {
        overwrite: false,
        as_of: "2025-03-01T00:00:00Z".into(),
        tool_version: "0.1.0".into(),
        inputs: vec![
            input("collection.yaml", b"name: test\n", "manifest"),
            input("logs/sync.jsonl", b"{\"id\":1}\n", "sync_log"),
        ],
        predicate: serde_json::json!({"verdict": "pass", "findings": 0}),
    };
    let pack = dir.join("pack");
    builder.write(&pack, options, &test_key()).unwrap();
    pack
}

/// `syncproof verify PACK --pubkey KEY`.
fn verify_cmd(pack: &Path, pubkey: &Path) -> Command {
    let mut cmd = Command::cargo_bin("syncproof").unwrap();
    cmd.arg("--error-format")
        .arg("plain")
        .arg("verify")
        .arg(pack)
        .arg("--pubkey")
        .arg(pubkey);
    cmd
}

#[test]
fn valid_pack_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .assert()
        .code(0)
        .stdout(
            predicate::str::starts_with("verified: ")
                .and(predicate::str::contains("3 files"))
                .and(predicate::str::contains(format!(
                    "signed by key {TEST_KEY_ID}"
                )))
                .and(predicate::str::contains("as of 2025-03-01T00:00:00Z")),
        );
}

#[test]
fn valid_pack_with_matching_collection_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let collection = write_collection(dir.path());
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .arg("--collection")
        .arg(&collection)
        .assert()
        .code(0);
}

#[test]
fn changed_collection_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let collection = write_collection(dir.path());
    fs::write(collection.join("logs/sync.jsonl"), "{\"id\":2}\n").unwrap();
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .arg("--collection")
        .arg(&collection)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "digest-mismatch: collection file `logs/sync.jsonl`: sha256 expected",
        ));
}

#[test]
fn tampered_byte_fails_naming_the_file_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let path = pack.join("report.md");
    let mut bytes = fs::read(&path).unwrap();
    bytes[2] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    let found = syncproof::evidence::manifest::digest_bytes(&bytes).1;
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("verification failed:")
                .and(predicate::str::contains(
                    "digest-mismatch: pack file `report.md`",
                ))
                .and(predicate::str::contains(format!("found {found}"))),
        );
}

#[test]
fn deleted_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    fs::remove_file(pack.join("report.json")).unwrap();
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("missing: pack file `report.json`"));
}

#[test]
fn added_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    fs::write(pack.join("sarif/extra.sarif"), "{}").unwrap();
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "unlisted: pack file `sarif/extra.sarif`: not listed in the manifest",
        ));
}

#[test]
fn other_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    verify_cmd(&pack, &key_fixture("other.pub.pem"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "bad-signature: `manifest.sig`: signature does not verify with the given public key",
            )
            .and(predicate::str::contains("signer-mismatch")),
        )
        .stderr(predicate::str::contains("not authenticated"));
}

#[test]
fn edited_manifest_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let path = pack.join("manifest.json");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("2025-03-01", "2025-04-01")).unwrap();
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("bad-signature: `manifest.sig`")
                .and(predicate::str::contains("subject-mismatch"))
                .and(predicate::str::contains("verified:").not()),
        );
}

#[test]
fn tampered_envelope_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let path = pack.join("attestation.dsse.json");
    let mut env: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    env["payloadType"] = "application/json".into();
    fs::write(&path, serde_json::to_vec(&env).unwrap()).unwrap();
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "invalid-envelope: `attestation.dsse.json`",
        ));
}

#[cfg(unix)]
#[test]
fn symlink_in_pack_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let outside = dir.path().join("report.json");
    fs::rename(pack.join("report.json"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, pack.join("report.json")).unwrap();
    verify_cmd(&pack, &key_fixture("test.pub.pem"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "not-regular-file: pack file `report.json`: expected a regular file, found a symbolic link",
        ));
}

#[test]
fn missing_pubkey_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    verify_cmd(&pack, &dir.path().join("nope.pub.pem"))
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("cannot read key file"));
}

#[test]
fn invalid_pubkey_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let bad = dir.path().join("bad.pub.pem");
    fs::write(&bad, "not a key\n").unwrap();
    verify_cmd(&pack, &bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is not an SPKI PEM Ed25519 public key",
        ));
}

#[test]
fn private_key_given_as_pubkey_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write_pack(dir.path());
    let pem = fs::read_to_string(key_fixture("test.key.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let out = verify_cmd(&pack, &key_fixture("test.key.pem"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("PRIVATE KEY"), "{all}");
    assert!(!all.contains(&body), "{all}");
    assert!(!all.contains(&body[..16]), "{all}");
}

#[test]
fn pack_that_is_not_a_directory_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pack.tar");
    fs::write(&file, "x").unwrap();
    verify_cmd(&file, &key_fixture("test.pub.pem"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a directory"));
    verify_cmd(&dir.path().join("absent"), &key_fixture("test.pub.pem"))
        .assert()
        .code(2);
}

#[test]
fn missing_pubkey_flag_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("syncproof")
        .unwrap()
        .arg("verify")
        .arg(dir.path())
        .assert()
        .code(2);
}
