//! The command line as a process sees it: what `labeljoin run` writes to a pipe.

use std::path::Path;
use std::process::Command;

#[test]
fn logs_piped_to_a_file_are_plain_text_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/ad_clicks.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_labeljoin"))
        .arg("run")
        .arg(&pipeline)
        .arg("--output")
        .arg(dir.path().join("out"))
        .arg("--no-state")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("starting"),
        "the run logs its start: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape codes in piped logs: {stderr:?}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains('\u{1b}'), "nor in the summary: {stdout:?}");
}

#[test]
fn zero_workers_is_refused_naming_the_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_labeljoin"))
        .args([
            "run",
            "pipelines/ad_clicks.toml",
            "--no-state",
            "--workers",
            "0",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(stderr.contains("--workers"), "{stderr}");
    assert!(
        stderr.contains("at least 1"),
        "names the allowed values: {stderr}"
    );
}
