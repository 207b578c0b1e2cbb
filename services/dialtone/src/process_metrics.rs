//! The process's own figures in Prometheus' standard names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`), read from
//! `/proc/self`: what an SRE compares across nodes before anything Dialtone-specific.
//! Parsing is pure; [`render`] reads the files.

/// Clock ticks per second of `/proc/[pid]/stat`'s times: the kernel's USER_HZ, which its
/// ABI fixes at 100 whatever the kernel's own tick rate.
const TICKS_PER_S: f64 = 100.0;

/// Seconds of CPU (user + system) from `/proc/self/stat`.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// Resident memory in bytes from `/proc/self/status` (`VmRSS:  1234 kB`).
pub fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit on open files from `/proc/self/limits`.
pub fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The families, as Prometheus text (a figure that cannot be read is left out).
pub fn render(out: &mut String) {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    if let Some(s) = read("/proc/self/stat").as_deref().and_then(cpu_seconds) {
        out.push_str(&format!("# HELP process_cpu_seconds_total User and system CPU time spent, seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {s}\n"));
    }
    if let Some(b) = read("/proc/self/status")
        .as_deref()
        .and_then(resident_bytes)
    {
        out.push_str(&format!("# HELP process_resident_memory_bytes Resident memory size, bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {b}\n"));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // Less the descriptor this listing holds open.
        let n = dir.count().saturating_sub(1);
        out.push_str(&format!("# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {n}\n"));
    }
    if let Some(m) = read("/proc/self/limits").as_deref().and_then(max_fds) {
        out.push_str(&format!("# HELP process_max_fds Most file descriptors the process may open.\n# TYPE process_max_fds gauge\nprocess_max_fds {m}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let stat = "8398 (dial tone) S 8394 8394 19088 0 -1 4194304 125 0 1 0 250 50 0 0 20 0 1";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("8398 (x"), None);
        assert_eq!(cpu_seconds("8398 (x) S 1 2"), None);
        assert_eq!(
            resident_bytes("Name:\tdialtone\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\n"),
            Some(5_242_880)
        );
        assert_eq!(resident_bytes("Name:\tx\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                20000                files     \n";
        assert_eq!(max_fds(limits), Some(20000));
        assert_eq!(
            max_fds("Max open files            unlimited            unlimited            files"),
            None
        );
    }

    #[test]
    fn this_process_has_figures() {
        let mut out = String::new();
        render(&mut out);
        for family in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(out.contains(family), "{family} in {out}");
        }
    }
}
