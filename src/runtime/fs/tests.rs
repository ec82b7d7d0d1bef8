//! Path checks and opens beneath the root, on real files in a temporary directory.

use super::*;

fn root() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn opened_root(dir: &Path) -> Root {
    let canonical = dir.canonicalize().unwrap();
    let fd = rustix::fs::open(&canonical, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    Root { canonical, fd }
}

#[test]
fn accepts_files_inside_root_and_future_files() {
    let dir = root();
    std::fs::write(dir.path().join("a.mp3"), b"x").unwrap();
    let p = resolve(dir.path(), &dir.path().join("a.mp3").to_string_lossy());
    assert!(p.unwrap().ends_with("a.mp3"));
    let rel = resolve(dir.path(), "a.mp3").unwrap();
    assert!(rel.ends_with("a.mp3"));
    let later = resolve(dir.path(), "later/b.mp3").unwrap();
    assert!(later.ends_with("later/b.mp3"));
    assert!(later.starts_with(dir.path().canonicalize().unwrap()));
    assert_eq!(
        resolve(dir.path(), "a.mp3/b.mp3"),
        Err(PathError::NotRegular(
            "a path below something that is not a directory"
        ))
    );
}

#[test]
fn long_missing_paths_resolve_and_overlong_ones_are_refused() {
    let dir = root();
    let deep = format!("{}x.mp3", "a/".repeat(1500));
    let p = resolve(dir.path(), &deep).unwrap();
    assert!(p.ends_with("a/a/x.mp3"));
    assert_eq!(
        resolve(dir.path(), &"a".repeat(MAX_FILEPATH_LEN + 1)),
        Err(PathError::TooLong)
    );
}

#[test]
fn refuses_escapes_and_special_files() {
    let dir = root();
    assert_eq!(resolve(dir.path(), "../etc/passwd"), Err(PathError::DotDot));
    assert_eq!(
        resolve(dir.path(), "/etc/passwd"),
        Err(PathError::OutsideRoot)
    );
    assert_eq!(
        resolve(dir.path(), "/dev/zero"),
        Err(PathError::OutsideRoot)
    );
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
    assert_eq!(resolve(dir.path(), "link"), Err(PathError::OutsideRoot));
    std::fs::create_dir(dir.path().join("d")).unwrap();
    assert_eq!(
        resolve(dir.path(), "d"),
        Err(PathError::NotRegular("a directory"))
    );
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("f"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert_eq!(
        resolve(dir.path(), "f"),
        Err(PathError::NotRegular("a FIFO"))
    );
    assert_eq!(
        resolve(Path::new("/nonexistent-asf-root"), "a"),
        Err(PathError::RootMissing)
    );
}

/// A root holding `d/a.mp3` ("inside"), a directory outside it holding `a.mp3` ("OUTSIDE"),
/// the opened root and the stored path of `d/a.mp3`.
fn root_with_a_file_and_an_outside() -> (tempfile::TempDir, tempfile::TempDir, Root, PathBuf) {
    let dir = root();
    let outside = root();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/a.mp3"), b"inside").unwrap();
    std::fs::write(outside.path().join("a.mp3"), b"OUTSIDE").unwrap();
    let r = opened_root(dir.path());
    let stored = resolve(dir.path(), "d/a.mp3").unwrap();
    (dir, outside, r, stored)
}

#[test]
fn opens_beneath_the_root_and_refuses_a_swapped_parent() {
    let (dir, outside, r, stored) = root_with_a_file_and_an_outside();
    let f = open_beneath(&r, &stored).unwrap();
    assert_eq!(f.identity.len, 6);
    // Swap the directory for a symlink that leads out of the root.
    std::fs::rename(dir.path().join("d"), dir.path().join("d.real")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
    assert!(matches!(
        open_beneath(&r, &stored),
        Err(OpenError::Escapes(_)) | Err(OpenError::Io { .. })
    ));
    // The per-component walk refuses it too.
    let rel = stored.strip_prefix(&r.canonical).unwrap();
    assert!(walk(&r.fd, rel, OFlags::RDONLY).is_err());
    // A symlink inside the root that stays inside still works (a relative directory link).
    std::fs::remove_file(dir.path().join("d")).unwrap();
    std::os::unix::fs::symlink("d.real", dir.path().join("d")).unwrap();
    let via_link = dir.path().canonicalize().unwrap().join("d/a.mp3");
    assert_eq!(open_beneath(&r, &via_link).unwrap().identity.len, 6);
    // A final symlink component is not followed, a directory is not a file.
    std::os::unix::fs::symlink("d.real/a.mp3", dir.path().join("l.mp3")).unwrap();
    let l = dir.path().canonicalize().unwrap().join("l.mp3");
    assert!(open_beneath(&r, &l).is_err());
    let d = dir.path().canonicalize().unwrap().join("d.real");
    assert!(matches!(
        open_beneath(&r, &d),
        Err(OpenError::NotRegular {
            kind: "a directory",
            ..
        })
    ));
    assert!(matches!(
        open_beneath(&r, Path::new("/etc/passwd")),
        Err(OpenError::Escapes(_))
    ));
}

#[test]
fn cached_open_matches_the_full_open_and_never_leaves_the_root() {
    let (dir, outside, r, stored) = root_with_a_file_and_an_outside();
    // The full open puts every component in the lookup cache; the cached open then succeeds
    // on the same file with the same identity as fstat's.
    let full = open_beneath(&r, &stored).unwrap();
    let cached = open_cached(&r, &stored).expect("a cached open of a file just opened");
    assert_eq!(cached.identity, full.identity);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(cached.fd), &mut text).unwrap();
    assert_eq!(text, "inside");
    // A missing file, a directory, a FIFO, the root itself and a path outside are left to the
    // threads (which give the real error).
    let canon = dir.path().canonicalize().unwrap();
    assert!(open_cached(&r, &canon.join("d/missing.mp3")).is_none());
    assert!(open_cached(&r, &canon.join("d")).is_none());
    rustix::fs::mknodat(
        rustix::fs::CWD,
        canon.join("f.fifo"),
        FileType::Fifo,
        Mode::RUSR | Mode::WUSR,
        0,
    )
    .unwrap();
    assert!(open_cached(&r, &canon.join("f.fifo")).is_none());
    assert!(open_cached(&r, &canon).is_none());
    assert!(open_cached(&r, Path::new("/etc/passwd")).is_none());
    // A parent swapped for a symlink out of the root is not followed by the cached open either.
    std::fs::rename(dir.path().join("d"), dir.path().join("d.real")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
    let _ = std::fs::read(outside.path().join("a.mp3")).unwrap();
    assert!(open_cached(&r, &stored).is_none());
    // A final symlink is not followed.
    std::os::unix::fs::symlink("d.real/a.mp3", dir.path().join("l.mp3")).unwrap();
    let _ = std::fs::read(dir.path().join("l.mp3")).unwrap();
    assert!(open_cached(&r, &canon.join("l.mp3")).is_none());
}

#[test]
fn a_job_whose_answer_was_dropped_is_skipped() {
    let dir = root();
    let files = DiskFiles::new(dir.path().to_path_buf()).expect("files");
    // Every file thread held until `release`.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let blockers: Vec<_> = (0..FILE_THREADS)
        .map(|_| {
            let held = Arc::clone(&held);
            files.run(
                move || {
                    let _ = held.lock().map(|rx| rx.recv());
                },
                (),
                (),
            )
        })
        .collect();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    drop(files.run(
        move || flag.store(true, std::sync::atomic::Ordering::SeqCst),
        (),
        (),
    ));
    // One thread goes on; the others stay held, so that it takes the dropped job and then
    // the probe, in queue order.
    let probe = files.run(|| (), (), ());
    release.send(()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(probe);
    for _ in 1..FILE_THREADS {
        release.send(()).unwrap();
    }
    rt.block_on(async {
        for b in blockers {
            b.await;
        }
    });
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "the dropped job ran"
    );
}

#[test]
fn the_walk_fallback_keeps_every_open_beneath_the_root() {
    // The open as it runs where openat2 is refused (ENOSYS, or EPERM under seccomp): the
    // same checks over `walk` instead of openat2.
    let by_walk = |r: &Root, p: &Path| open_checked(r, p, walk);
    let (dir, outside, r, stored) = root_with_a_file_and_an_outside();
    let canon = dir.path().canonicalize().unwrap();
    let f = by_walk(&r, &stored).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(f.fd), &mut text).unwrap();
    assert_eq!(text, "inside");
    // The parent swapped for a symlink that leads out of the root (absolute, then relative).
    std::fs::rename(dir.path().join("d"), dir.path().join("d.real")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
    assert!(matches!(by_walk(&r, &stored), Err(OpenError::Escapes(_))));
    std::fs::remove_file(dir.path().join("d")).unwrap();
    let up = format!(
        "../{}",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    std::os::unix::fs::symlink(&up, dir.path().join("d")).unwrap();
    assert!(std::fs::read(dir.path().join("d/a.mp3")).unwrap() == b"OUTSIDE");
    assert!(matches!(by_walk(&r, &stored), Err(OpenError::Escapes(_))));
    // A final component that is a symlink out of the root is not followed.
    std::os::unix::fs::symlink(outside.path().join("a.mp3"), canon.join("out.mp3")).unwrap();
    assert!(matches!(
        by_walk(&r, &canon.join("out.mp3")),
        Err(OpenError::Io { .. })
    ));
    // `..` and absolute components are refused, whatever they would lead to.
    assert_eq!(
        walk(&r.fd, Path::new("d.real/../d.real/a.mp3"), OFlags::RDONLY).err(),
        Some(Errno::XDEV)
    );
    assert_eq!(
        walk(&r.fd, Path::new("/etc/passwd"), OFlags::RDONLY).err(),
        Some(Errno::XDEV)
    );
    // Stored paths outside the root, the root itself, directories and missing files.
    assert!(matches!(
        by_walk(&r, Path::new("/etc/passwd")),
        Err(OpenError::Escapes(_))
    ));
    assert!(matches!(
        by_walk(&r, &canon),
        Err(OpenError::NotRegular {
            kind: "a directory",
            ..
        })
    ));
    assert!(matches!(
        by_walk(&r, &canon.join("d.real")),
        Err(OpenError::NotRegular {
            kind: "a directory",
            ..
        })
    ));
    assert!(matches!(
        by_walk(&r, &canon.join("d.real/none.mp3")),
        Err(OpenError::Missing(_))
    ));
    // The real directory still opens by the walk.
    let moved = canon.join("d.real/a.mp3");
    assert_eq!(by_walk(&r, &moved).unwrap().identity.len, 6);
}

/// The answer if it is there at the first poll.
fn now<T>(mut answer: Answer<T>) -> Option<T> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match answer.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn a_request_past_the_queue_limit_is_refused_at_once() {
    const LIMIT: usize = 3;
    let dir = root();
    let canon = dir.path().canonicalize().unwrap();
    let files = DiskFiles::with_queue_limit(dir.path().to_path_buf(), LIMIT).expect("files");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Every file thread held until `release`, each having taken its job off the queue.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let (started, running) = std::sync::mpsc::channel::<()>();
    let blockers: Vec<_> = (0..FILE_THREADS)
        .map(|_| {
            let (held, started) = (Arc::clone(&held), started.clone());
            files.run(
                move || {
                    let _ = started.send(());
                    let _ = held.lock().map(|rx| rx.recv());
                    "ran"
                },
                "gone",
                "busy",
            )
        })
        .collect();
    for _ in 0..FILE_THREADS {
        running.recv().unwrap();
    }
    // The queue takes LIMIT jobs (a missing file is never opened from the lookup cache).
    let missing = canon.join("missing.mp3");
    let queued: Vec<_> = (0..LIMIT).map(|_| files.open(&missing)).collect();
    // The next open, path check and job are answered at once, without a thread (polled
    // once: a queued one would wait for the held threads).
    let refused = now(files.open(&missing));
    assert!(
        matches!(refused, Some(Err(OpenError::Busy(ref p))) if *p == missing),
        "{refused:?}"
    );
    assert_eq!(
        now(files.resolve("missing.mp3")),
        Some(Err(PathError::Busy))
    );
    assert_eq!(now(files.run(|| "ran", "gone", "busy")), Some("busy"));
    // Released, every queued job runs and gives its real answer.
    for _ in 0..FILE_THREADS {
        release.send(()).unwrap();
    }
    rt.block_on(async {
        for b in blockers {
            assert_eq!(b.await, "ran");
        }
        for q in queued {
            assert!(matches!(q.await, Err(OpenError::Missing(_))));
        }
    });
    // With the queue drained, requests are served again.
    assert!(rt.block_on(files.resolve("missing.mp3")).is_ok());
}
