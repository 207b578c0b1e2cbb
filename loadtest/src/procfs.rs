//! Process figures from /proc: the tree of a process, CPU time and proportional memory.

/// Every pid whose ancestry reaches `root` (Kamailio forks its workers).
pub fn tree(root: u32) -> Vec<u32> {
    let mut all = vec![root];
    let mut changed = true;
    while changed {
        changed = false;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if all.contains(&pid) {
                continue;
            }
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                });
            if ppid.is_some_and(|p| all.contains(&p)) {
                all.push(pid);
                changed = true;
            }
        }
    }
    all
}

/// utime + stime of the processes, in microseconds.
pub fn cpu_us(pids: &[u32]) -> u64 {
    let hz = 100u64; // USER_HZ on Linux
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let r = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(r.get(11)?.parse::<u64>().ok()? + r.get(12)?.parse::<u64>().ok()?)
        })
        .sum::<u64>()
        * 1_000_000
        / hz
}

/// Proportional set size of the processes (shared memory counted once), in bytes.
pub fn pss(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}
