//! Criterion benches of block reads from a file: tokio-uring's owned-buffer `read_exact_at`
//! against std's `FileExt::read_exact_at`, both reading a 64 MiB temp file in 256 KiB blocks
//! (ASF's read block size) into one reused buffer.
//!
//! The file is written once and read once before measuring, so the page cache is warm: this
//! measures the cost of the read path (syscall or ring submission, copy out of the page
//! cache), not the disk. The io_uring runtime is started once per criterion sample
//! (`iter_custom`), so its setup is not timed. These benches must not open sockets.
#![allow(missing_docs)]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Size of the file read per iteration.
const FILE_BYTES: usize = 64 << 20;
/// Read size: ASF's `read_block_size`.
const BLOCK: usize = 256 * 1024;

/// Writes the test file and reads it back once, leaving it in the page cache.
fn make_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("audio.bin");
    let block: Vec<u8> = (0..BLOCK).map(|i| (i % 251) as u8).collect();
    let file = File::create(&path).expect("create the test file");
    for b in 0..FILE_BYTES / BLOCK {
        file.write_all_at(&block, (b * BLOCK) as u64)
            .expect("write the test file");
    }
    file.sync_all().expect("sync the test file");
    std_read_all(
        &File::open(&path).expect("open the test file"),
        &mut vec![0; BLOCK],
    );
    path
}

/// Reads the whole file block by block with std; returns a checksum so nothing is elided.
fn std_read_all(file: &File, buf: &mut [u8]) -> u64 {
    let mut sum = 0u64;
    for b in 0..FILE_BYTES / BLOCK {
        file.read_exact_at(buf, (b * BLOCK) as u64)
            .expect("read a block with std");
        sum = sum.wrapping_add(u64::from(buf[0]));
    }
    sum
}

/// Reads the whole file `iters` times with tokio-uring, handing one buffer in and out of the
/// ring, and returns the time spent reading (runtime start and file open excluded).
fn uring_read(path: &Path, iters: u64) -> Duration {
    tokio_uring::start(async {
        let file = tokio_uring::fs::File::open(path)
            .await
            .expect("open the test file with io_uring");
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
        let mut sum = 0u64;
        let start = Instant::now();
        for _ in 0..iters {
            for b in 0..FILE_BYTES / BLOCK {
                // read_exact_at fills the buffer's capacity from its start; the buffer comes
                // back with the result, to be reused for the next block.
                let (res, back) = file.read_exact_at(buf, (b * BLOCK) as u64).await;
                res.expect("read a block with io_uring");
                sum = sum.wrapping_add(u64::from(back[0]));
                buf = back;
                buf.clear();
            }
        }
        let elapsed = start.elapsed();
        std::hint::black_box(sum);
        file.close().await.expect("close the test file");
        elapsed
    })
}

fn file_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let path = make_file(dir.path());

    let mut group = c.benchmark_group("runtime/file_read");
    group.throughput(Throughput::Bytes(FILE_BYTES as u64));
    let id = |what: &str| BenchmarkId::new(what, "256KiB_blocks");
    group.bench_function(id("io_uring"), |b| {
        b.iter_custom(|iters| uring_read(&path, iters))
    });
    let file = File::open(&path).expect("open the test file");
    let mut buf = vec![0u8; BLOCK];
    group.bench_function(id("std_pread"), |b| {
        b.iter(|| std_read_all(&file, &mut buf))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::short();
    targets = file_read
}
criterion_main!(benches);
