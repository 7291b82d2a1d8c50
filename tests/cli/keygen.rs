//! `syncproof keygen`: files, modes, key id, refusal to overwrite, and that no
//! private key material is ever printed.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use base64::Engine as _;
use predicates::prelude::*;
use sha2::{Digest, Sha256};
use syncproof::evidence::keys::{KeyError, PrivateKey};

/// `syncproof keygen --out DIR`.
fn keygen(out: &Path) -> Command {
    let mut cmd = Command::cargo_bin("syncproof").unwrap();
    cmd.arg("--error-format")
        .arg("plain")
        .arg("keygen")
        .arg("--out")
        .arg(out);
    cmd
}

/// The DER bytes inside a PEM file.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn writes_key_pair_and_prints_key_id_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let assert = keygen(&out).assert().code(0);
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();

    let private = out.join("syncproof.key.pem");
    let public = out.join("syncproof.pub.pem");
    let private_pem = fs::read_to_string(&private).unwrap();
    let public_pem = fs::read_to_string(&public).unwrap();
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));

    let key_id = hex::encode(Sha256::digest(pem_der(&public_pem)));
    assert!(stdout.contains(&format!("key id: {key_id}\n")), "{stdout}");
    assert!(stdout.contains(&private.display().to_string()), "{stdout}");
    assert!(stdout.contains(&public.display().to_string()), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"));
    let secret_b64: String = private_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!stdout.contains(&secret_b64));
}

#[cfg(unix)]
#[test]
fn private_key_is_created_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path()).assert().code(0);
    let mode = fs::metadata(dir.path().join("syncproof.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn refuses_to_overwrite_existing_keys() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path()).assert().code(0);
    let before = fs::read(dir.path().join("syncproof.key.pem")).unwrap();
    let secret_b64: String = String::from_utf8(before.clone())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    keygen(dir.path()).assert().code(2).stdout("").stderr(
        predicate::str::contains("already exists")
            .and(predicate::str::contains("PRIVATE KEY").not())
            .and(predicate::str::contains(secret_b64).not()),
    );
    assert_eq!(
        fs::read(dir.path().join("syncproof.key.pem")).unwrap(),
        before
    );
}

#[test]
fn refuses_when_only_the_public_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("syncproof.pub.pem"), "x").unwrap();
    keygen(dir.path()).assert().code(2);
    assert!(!dir.path().join("syncproof.key.pem").exists());
}

#[cfg(unix)]
#[test]
fn world_readable_private_key_is_refused_with_chmod_help() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path()).assert().code(0);
    let private = dir.path().join("syncproof.key.pem");
    assert!(PrivateKey::from_pem_file(&private).is_ok());

    fs::set_permissions(&private, fs::Permissions::from_mode(0o644)).unwrap();
    let err = PrivateKey::from_pem_file(&private).unwrap_err();
    assert!(matches!(err, KeyError::Permissions { mode: 0o644, .. }));
    let rendered = format!("{:?}", miette::Report::new(err));
    assert!(rendered.contains("0644"), "{rendered}");
    assert!(rendered.contains("syncproof.key.pem"), "{rendered}");
    assert!(rendered.contains("chmod 600"), "{rendered}");
    assert!(!rendered.contains("PRIVATE KEY"), "{rendered}");
}

#[test]
fn private_key_debug_is_redacted() {
    let pem = fs::read_to_string(super::verify::key_fixture("test.key.pem")).unwrap();
    let key = PrivateKey::from_pkcs8_pem(&pem).unwrap();
    let debug = format!("{key:?}");
    assert_eq!(
        debug,
        format!(
            "PrivateKey(<redacted>, key id {})",
            super::verify::TEST_KEY_ID
        )
    );
}
