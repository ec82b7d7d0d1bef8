//! The process's own figures for `/metrics`, read from `/proc` at each scrape.

use crate::metrics::ProcessStats;

/// `/proc` reports CPU times in clock ticks of `USER_HZ`, which Linux fixes at 100 for
/// user space whatever the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// Reads the figures, or `None` when `/proc` cannot be read (the scrape then has no
/// process families, and says so in the log).
pub(crate) fn read() -> Option<ProcessStats> {
    match read_proc() {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /proc/self for the process metrics");
            None
        }
    }
}

fn read_proc() -> std::io::Result<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let boot = std::fs::read_to_string("/proc/stat")?;
    let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    let bad = |what: &str| std::io::Error::other(format!("unexpected {what}"));
    let (cpu_ticks, start_ticks, vsize) =
        parse_stat(&stat).ok_or_else(|| bad("/proc/self/stat"))?;
    let boot_time = field_after(&boot, "btime").ok_or_else(|| bad("/proc/stat"))?;
    Ok(ProcessStats {
        resident_memory_bytes: field_after(&status, "VmRSS:").unwrap_or(0) * 1024,
        virtual_memory_bytes: vsize,
        open_fds,
        max_fds: max_open_files(&limits).unwrap_or(0),
        cpu_seconds: cpu_ticks as f64 / USER_HZ,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / USER_HZ,
    })
}

/// `(utime + stime, starttime, vsize)` of a `/proc/<pid>/stat` line. The command name may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((num(14)? + num(15)?, num(22)?, num(23)?))
}

/// The number after the line starting with `key` (`VmRSS:   1234 kB`, `btime 1700000000`).
fn field_after(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (asf (w) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    1234 987654 300 18446744073709551615";
        assert_eq!(parse_stat(line), Some((300, 1234, 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_reads() {
        let p = read_proc().expect("/proc/self");
        assert!(p.resident_memory_bytes > 0 && p.open_fds > 0 && p.max_fds > 0);
        assert!(p.start_time_seconds > 1.0e9, "{p:?}");
        assert_eq!(field_after("a 1\nbtime 17 x\n", "btime"), Some(17));
        assert_eq!(
            max_open_files(
                "Max open files            1024                 4096                 files\n"
            ),
            Some(1024)
        );
    }
}
