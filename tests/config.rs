//! Configuration as the operator meets it: the real `asf` binary, started with a clean
//! environment in an empty temporary directory, must refuse every bad `ASF_*` value (and a
//! malformed `.env`) with exit status 2 and exactly one stderr line naming the variable and
//! its value, and must honour `.env` under the process environment (`asf --print-config`).
//!
//! These tests see ASF only as a process; they must not reach into the crate's internals.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the binary may take to exit before the test kills it and fails.
const LIMIT: Duration = Duration::from_secs(20);

/// What a finished `asf` run left behind.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `asf args...` in `dir` with only PATH, HOME and `vars` in its environment.
fn run(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_asf"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .envs(vars.iter().copied())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the asf binary");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for asf") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("asf {args:?} with {vars:?} did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Asserts the run was refused the way an operator should see it: status 2, one stderr
/// line containing every one of `needles`, no panic.
fn assert_refused(run: &Run, needles: &[&str]) {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        run.code,
        Some(2),
        "expected exit status 2; stderr: {:?}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "asf panicked: {:?}",
        run.stderr
    );
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one stderr line, got {:?}",
        run.stderr
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "stderr line {:?} should contain {needle:?}",
            lines[0]
        );
    }
}

/// `name=value` in the process environment must be refused, naming both.
fn refuses(name: &str, value: &str) {
    let dir = tempdir();
    let run = run(dir.path(), &[(name, value)], &[]);
    assert_refused(&run, &[name, value]);
}

/// The `chunk_size=` token of `asf --print-config`.
fn printed_chunk_size(run: &Run) -> &str {
    assert_eq!(
        run.code,
        Some(0),
        "--print-config should succeed; stderr: {:?}",
        run.stderr
    );
    run.stdout
        .split_whitespace()
        .find(|t| t.starts_with("chunk_size="))
        .unwrap_or_else(|| panic!("no chunk_size= in {:?}", run.stdout))
}

#[test]
fn chunk_size_not_a_number_is_refused() {
    refuses("ASF_CHUNK_SIZE", "abc");
}

#[test]
fn chunk_size_zero_is_refused() {
    refuses("ASF_CHUNK_SIZE", "0");
}

#[test]
fn port_above_65535_is_refused() {
    refuses("ASF_PORT", "70000");
}

#[test]
fn negative_sleep_interval_is_refused() {
    refuses("ASF_STREAM_SLEEP_INTERVAL", "-1");
}

#[test]
fn nan_sleep_interval_is_refused() {
    refuses("ASF_STREAM_SLEEP_INTERVAL", "NaN");
}

#[test]
fn unknown_boolean_is_refused() {
    refuses("ASF_DEBUG_MODE", "maybe");
}

#[test]
fn zero_workers_is_refused() {
    refuses("ASF_WORKERS", "0");
}

#[test]
fn cors_origin_without_scheme_is_refused() {
    refuses("ASF_CORS_ALLOWED_ORIGINS", "app.example");
}

#[test]
fn help_lists_the_options_and_points_to_the_settings() {
    let dir = tempdir();
    let run = run(dir.path(), &[], &["--help"]);
    assert_eq!(run.code, Some(0), "stderr: {:?}", run.stderr);
    for needle in [
        "--print-config",
        "--version",
        "--help",
        "ASF_*",
        ".env",
        "README.md",
    ] {
        assert!(
            run.stdout.contains(needle),
            "no {needle:?} in {:?}",
            run.stdout
        );
    }
}

#[test]
fn empty_numeric_value_is_refused() {
    let dir = tempdir();
    let run = run(dir.path(), &[("ASF_CHUNK_SIZE", "")], &[]);
    assert_refused(&run, &["ASF_CHUNK_SIZE", "empty"]);
}

#[test]
fn malformed_dotenv_is_refused_naming_it() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join(".env"),
        "ASF_PORT=0\nthis line is not an assignment\n",
    )
    .expect("write .env");
    let run = run(dir.path(), &[], &["--print-config"]);
    assert_refused(&run, &[".env"]);
}

#[test]
fn bad_value_in_dotenv_is_refused_naming_it() {
    let dir = tempdir();
    std::fs::write(dir.path().join(".env"), "ASF_CHUNK_SIZE=abc\n").expect("write .env");
    let run = run(dir.path(), &[], &[]);
    assert_refused(&run, &["ASF_CHUNK_SIZE", "abc"]);
}

#[test]
fn dotenv_value_is_used_and_process_env_wins() {
    let dir = tempdir();
    std::fs::write(dir.path().join(".env"), "ASF_CHUNK_SIZE=8192\n").expect("write .env");

    let from_file = run(dir.path(), &[], &["--print-config"]);
    assert_eq!(printed_chunk_size(&from_file), "chunk_size=8192");

    let from_env = run(
        dir.path(),
        &[("ASF_CHUNK_SIZE", "1024")],
        &["--print-config"],
    );
    assert_eq!(printed_chunk_size(&from_env), "chunk_size=1024");
}

#[test]
fn print_config_masks_secrets() {
    let dir = tempdir();
    let run = run(
        dir.path(),
        &[
            ("ASF_SECRET_KEY", "do-not-print-me"),
            ("ASF_INTERNAL_TOKEN", "nor-me"),
        ],
        &["--print-config"],
    );
    assert_eq!(run.code, Some(0), "stderr: {:?}", run.stderr);
    for secret in ["do-not-print-me", "nor-me"] {
        assert!(!run.stdout.contains(secret), "{:?}", run.stdout);
        assert!(!run.stderr.contains(secret), "{:?}", run.stderr);
    }
    assert!(run.stdout.contains("secret_key=****"), "{:?}", run.stdout);
}
