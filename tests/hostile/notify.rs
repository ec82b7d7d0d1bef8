//! Abuse of the notify endpoint: bodies that are not JSON objects or carry mistyped or
//! oversized fields, and file paths that try to leave the audio root (`..`, absolute paths,
//! symlinks) or name something that is not a regular file (a FIFO, a directory, a NUL byte).

use serde_json::{json, Value};

use super::{assert_error, assert_error_prefix, leak, notify_json, Case, NOTIFY};
use crate::support::{post_raw, Server};

/// Bodies that are not a JSON object of two strings.
pub fn body_cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let mut v: Vec<Case<'_>> = Vec::new();
    v.push((
        "notify: invalid UTF-8 body -> 400",
        Box::new(move || {
            let r = post_raw(
                a,
                NOTIFY,
                b"{\"stream_id\": \"\xff\xfe\", \"filepath\": \"x\"}",
            );
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
        }),
    ));
    v.push((
        "notify: non-JSON body -> 400",
        Box::new(move || {
            let r = post_raw(a, NOTIFY, b"stream_id=a&filepath=b");
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
        }),
    ));
    v.push((
        "notify: JSON array body -> 400",
        Box::new(move || {
            let r = post_raw(a, NOTIFY, b"[1,2]");
            assert_error(&r, 400, "Request body must be a JSON object");
        }),
    ));
    v.push((
        "notify: 100000 nested '[' -> 400, no crash",
        Box::new(move || {
            let r = post_raw(a, NOTIFY, "[".repeat(100_000).as_bytes());
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
            let r = post_raw(a, NOTIFY, "{\"a\":".repeat(50_000).as_bytes());
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
        }),
    ));
    let file = s.write_audio("typed.mp3", b"abc");
    let file_s = file.to_string_lossy().into_owned();
    for field in ["stream_id", "filepath"] {
        for (kind, bad) in [
            ("number", json!(5)),
            ("array", json!(["a"])),
            ("object", json!({"a": 1})),
            ("bool", json!(true)),
        ] {
            let fs = file_s.clone();
            v.push((
                leak(format!("notify: {field} as {kind} -> 400")),
                Box::new(move || {
                    let mut body = json!({"stream_id": "strm_typed", "filepath": fs});
                    body[field] = bad.clone();
                    assert_error(
                        &notify_json(a, &body),
                        400,
                        &format!("{field} must be a string"),
                    );
                }),
            ));
        }
        let fs = file_s.clone();
        v.push((
            leak(format!("notify: {field} null -> 400 missing")),
            Box::new(move || {
                let mut body = json!({"stream_id": "strm_typed", "filepath": fs});
                body[field] = Value::Null;
                assert_error(
                    &notify_json(a, &body),
                    400,
                    &format!("Missing required parameters: {field}"),
                );
            }),
        ));
    }
    let fs = file_s.clone();
    v.push((
        "notify: stream id of 300 bytes -> 400",
        Box::new(move || {
            let body = json!({"stream_id": "s".repeat(300), "filepath": fs});
            assert_error(
                &notify_json(a, &body),
                400,
                "stream_id is too long (at most 256 bytes)",
            );
        }),
    ));
    v
}

/// File paths outside the audio root, or not a regular file.
pub fn path_cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let root = s.root_path();
    let root_s = root.to_string_lossy().into_owned();
    let mut v: Vec<Case<'_>> = Vec::new();
    let rs = root_s.clone();
    v.push((
        "notify: ../ traversal -> 403",
        Box::new(move || {
            for p in [
                format!("{rs}/../../etc/passwd"),
                "../etc/passwd".to_string(),
                format!("{rs}/sub/../typed.mp3"),
            ] {
                let body = json!({"stream_id": "strm_trav", "filepath": p});
                assert_error(
                    &notify_json(a, &body),
                    403,
                    "filepath must not contain '..' components",
                );
            }
        }),
    ));
    v.push((
        "notify: absolute path outside root -> 403",
        Box::new(move || {
            for p in ["/etc/passwd", "/dev/zero", "/proc/self/environ"] {
                let body = json!({"stream_id": "strm_abs", "filepath": p});
                assert_error(
                    &notify_json(a, &body),
                    403,
                    "filepath resolves outside the audio root",
                );
            }
        }),
    ));
    let root2 = root.clone();
    v.push((
        "notify: symlink escaping the root -> 403",
        Box::new(move || {
            for (name, target) in [
                ("evil.mp3", "/etc/passwd"),
                ("zero.mp3", "/dev/zero"),
                ("evildir", "/etc"),
            ] {
                let link = root2.join(name);
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(target, &link).expect("symlink");
                let p = if name == "evildir" {
                    link.join("passwd")
                } else {
                    link
                };
                let body = json!({"stream_id": "strm_link", "filepath": p.to_string_lossy()});
                assert_error(
                    &notify_json(a, &body),
                    403,
                    "filepath resolves outside the audio root",
                );
            }
        }),
    ));
    let root2 = root.clone();
    v.push((
        "notify: FIFO inside the root -> 400",
        Box::new(move || {
            let fifo = root2.join("pipe.mp3");
            let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("cstring");
            // SAFETY: mkfifo with a valid NUL-terminated path.
            let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
            assert_eq!(rc, 0, "mkfifo");
            let body = json!({"stream_id": "strm_fifo", "filepath": fifo.to_string_lossy()});
            assert_error(
                &notify_json(a, &body),
                400,
                "filepath is not a regular file (a FIFO)",
            );
        }),
    ));
    let root2 = root.clone();
    v.push((
        "notify: directory as filepath -> 400",
        Box::new(move || {
            std::fs::create_dir_all(root2.join("adir")).expect("mkdir");
            for p in [root2.join("adir"), root2.clone()] {
                let body = json!({"stream_id": "strm_dir", "filepath": p.to_string_lossy()});
                assert_error(
                    &notify_json(a, &body),
                    400,
                    "filepath is not a regular file (a directory)",
                );
            }
        }),
    ));
    v.push((
        "notify: NUL in filepath -> 400",
        Box::new(move || {
            let body = json!({"stream_id": "strm_nul", "filepath": "a\u{0}b.mp3"});
            assert_error(&notify_json(a, &body), 400, "filepath is not a valid path");
        }),
    ));
    v
}
