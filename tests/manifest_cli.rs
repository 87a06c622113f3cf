//! `weeble apply --dry-run` as an operator runs it: the real binary, real files, exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn weeble(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weeble"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weeble runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("weeble exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn dry_run_accepts_the_talk_manifest_and_prints_what_would_be_applied() {
    let out = weeble(&["apply", "--dry-run", "-f", "examples/nginx.yaml"], None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("deployment.apps/nginx valid (dry run)"),
        "{stdout}"
    );
    assert!(stdout.contains("replicas: 3, images: nginx"), "{stdout}");
    assert!(
        stdout.contains("service/nginx-service valid (dry run)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Warning: examples/nginx.yaml: document 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apiVersion: missing: defaulted to apps/v1"),
        "{stderr}"
    );
}

#[test]
fn dry_run_rejects_a_broken_file_with_exit_1_and_the_field_path() {
    let broken =
        include_str!("../examples/nginx.yaml").replace("containerPort: 80", "containerPort: 0");
    let out = weeble(&["apply", "--dry-run", "-f", "-"], Some(&broken));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing is printed as applied");
    assert!(
        stderr.contains("<stdin>: document 1 (Deployment \"nginx\"): spec.template.spec.containers[0].ports[0].containerPort: port 0 is out of range"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing applied"), "{stderr}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = weeble(&["apply", "--dry-run", "-f", "no/such.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read no/such.yaml"),
        "{}",
        text(&out.stderr)
    );
}
