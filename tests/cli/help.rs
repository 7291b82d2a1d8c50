//! One snapshot of `--help` per subcommand, so a change to the command line
//! is a reviewed change (`cargo insta review`).

use assert_cmd::Command;

fn help(args: &[&str]) -> String {
    let out = Command::cargo_bin("syncproof")
        .unwrap()
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn help_snapshots() {
    for cmd in [
        &[][..],
        &["reconcile"],
        &["check"],
        &["attest"],
        &["verify"],
        &["keygen"],
        &["policy", "list"],
        &["policy", "validate"],
        &["generate"],
    ] {
        let name = if cmd.is_empty() {
            "syncproof".to_owned()
        } else {
            cmd.join("-")
        };
        insta::assert_snapshot!(format!("help-{name}"), help(cmd));
    }
}
