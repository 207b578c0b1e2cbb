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
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if parse_stat(&stat).is_some_and(|s| all.contains(&s.ppid)) {
                all.push(pid);
                changed = true;
            }
        }
    }
    all
}

/// utime + stime of the processes, in microseconds.
pub fn cpu_us(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| Some(parse_stat(&s)?.ticks))
        .sum::<u64>()
        * US_PER_TICK
}

/// utime + stime of the threads of `pid` whose name starts with `prefix`, in microseconds:
/// what one runtime of a process (named by its threads) spent.
pub fn threads_cpu_us(pid: u32, prefix: &str) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| {
            let stat = parse_stat(&s)?;
            stat.name.starts_with(prefix).then_some(stat.ticks)
        })
        .sum::<u64>()
        * US_PER_TICK
}

/// Microseconds in a clock tick (USER_HZ is 100 on Linux).
const US_PER_TICK: u64 = 10_000;

/// What this module reads of a process's or thread's `stat` line.
#[derive(Debug, PartialEq, Eq)]
struct Stat<'a> {
    /// Between the first `(` and the last `)`: a name may hold either, or spaces.
    name: &'a str,
    ppid: u32,
    /// utime + stime, in clock ticks.
    ticks: u64,
}

/// A `stat` line's name, parent and CPU time; none when it is not one.
fn parse_stat(stat: &str) -> Option<Stat<'_>> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let r = rest.split_whitespace().collect::<Vec<_>>();
    Some(Stat {
        name,
        ppid: r.get(1)?.parse().ok()?,
        ticks: r.get(11)?.parse::<u64>().ok()? + r.get(12)?.parse::<u64>().ok()?,
    })
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

/// What the machine spent waiting for memory, from the kernel's pressure stall information
/// (`/proc/pressure/memory`) and its page counters (`/proc/vmstat`): when memory runs
/// short, file pages the processes still use are dropped and read back from disk, and
/// the processes waiting for them stall meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryPressure {
    /// Whether the kernel gives pressure stall information at all (`CONFIG_PSI`).
    pub reported: bool,
    /// Time some task waited for memory, microseconds.
    pub some_us: u64,
    /// Time every non-idle task waited for memory at once, microseconds.
    pub full_us: u64,
    /// File pages read back soon after they were dropped.
    pub refaults: u64,
    /// Page faults that had to read from disk.
    pub major_faults: u64,
}

impl MemoryPressure {
    /// The figures now (zeros where the kernel does not give them).
    pub fn now() -> Self {
        let read = |p| std::fs::read_to_string(p).unwrap_or_default();
        Self::parse(&read("/proc/pressure/memory"), &read("/proc/vmstat"))
    }

    /// From the text of `/proc/pressure/memory` and `/proc/vmstat`. Pure.
    pub fn parse(pressure: &str, vmstat: &str) -> Self {
        let total = |kind: &str| {
            pressure
                .lines()
                .find(|l| l.starts_with(kind))
                .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let counter = |name: &str| {
            vmstat
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0)
        };
        MemoryPressure {
            reported: pressure.lines().any(|l| l.starts_with("some ")),
            some_us: total("some "),
            full_us: total("full "),
            refaults: counter("workingset_refault_file"),
            major_faults: counter("pgmajfault"),
        }
    }

    /// One line of what the machine waited for since `before`.
    pub fn since(&self, before: &Self) -> String {
        let stalls = if self.reported && before.reported {
            format!(
                "memory stalls: some {:.1} s, full {:.1} s",
                self.some_us.saturating_sub(before.some_us) as f64 / 1e6,
                self.full_us.saturating_sub(before.full_us) as f64 / 1e6,
            )
        } else {
            "memory stalls: not reported by this kernel".to_owned()
        };
        format!(
            "{stalls}; {} file pages read back after being dropped, {} major faults",
            self.refaults.saturating_sub(before.refaults),
            self.major_faults.saturating_sub(before.major_faults),
        )
    }
}

/// What the kernel's TCP stack refused or sent again while connections were being
/// opened, from `/proc/net/netstat` (this network namespace: both ends of a loopback run
/// count). A listener whose accept queue is full drops a SYN, and the client sends it
/// again 1, 3 and 7 s later: registrations that take seconds with the server's own
/// handling fast can be that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenQueue {
    /// Connections a full accept queue refused (`ListenOverflows`).
    pub overflows: u64,
    /// SYNs and SYN-ACKs sent again for want of an answer (`TCPSynRetrans`).
    pub syn_retransmits: u64,
}

impl ListenQueue {
    /// The counters now (zeros where the kernel does not give them).
    pub fn now() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/net/netstat").unwrap_or_default())
    }

    /// From the text of `/proc/net/netstat`: pairs of lines, names then values, each
    /// starting with the group (`TcpExt:`). Pure.
    pub fn parse(netstat: &str) -> Self {
        let mut lines = netstat.lines();
        let mut tcp_ext = None;
        while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            if let (Some(n), Some(v)) = (
                names.strip_prefix("TcpExt:"),
                values.strip_prefix("TcpExt:"),
            ) {
                tcp_ext = Some((n, v));
                break;
            }
        }
        let Some((names, values)) = tcp_ext else {
            return Self::default();
        };
        let counter = |name: &str| {
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        ListenQueue {
            overflows: counter("ListenOverflows"),
            syn_retransmits: counter("TCPSynRetrans"),
        }
    }

    /// The counts since `before`.
    pub fn since(&self, before: &Self) -> Self {
        ListenQueue {
            overflows: self.overflows.saturating_sub(before.overflows),
            syn_retransmits: self.syn_retransmits.saturating_sub(before.syn_retransmits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ListenQueue, MemoryPressure, Stat, parse_stat};

    #[test]
    fn memory_pressure_is_read_from_the_kernels_counters() {
        let pressure = "some avg10=0.00 avg60=0.00 avg300=0.00 total=58736555\n\
                        full avg10=0.00 avg60=0.00 avg300=0.00 total=27773064\n";
        // A counter whose name starts with another's is not taken for it.
        let vmstat = "workingset_refault_anon 3\nworkingset_refault_file 18334675\npgmajfault5 9\npgmajfault 1827522\n";
        // (pressure, vmstat, expected)
        let cases = [
            (
                pressure,
                vmstat,
                MemoryPressure {
                    reported: true,
                    some_us: 58_736_555,
                    full_us: 27_773_064,
                    refaults: 18_334_675,
                    major_faults: 1_827_522,
                },
            ),
            ("", "", MemoryPressure::default()),
            (
                "some total=x\n",
                "pgmajfault\n",
                MemoryPressure {
                    reported: true,
                    ..MemoryPressure::default()
                },
            ),
        ];
        for (p, v, want) in cases {
            assert_eq!(MemoryPressure::parse(p, v), want, "{p:?} {v:?}");
        }
        let later = MemoryPressure {
            reported: true,
            some_us: 60_236_555,
            full_us: 28_273_064,
            refaults: 18_334_685,
            major_faults: 1_827_522,
        };
        assert_eq!(
            later.since(&MemoryPressure::parse(pressure, vmstat)),
            "memory stalls: some 1.5 s, full 0.5 s; 10 file pages read back after being dropped, 0 major faults"
        );
        assert_eq!(
            MemoryPressure::default().since(&MemoryPressure::default()),
            "memory stalls: not reported by this kernel; 0 file pages read back after being dropped, 0 major faults"
        );
    }

    #[test]
    fn the_listen_queue_is_read_from_tcpext() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                       TcpExt: 0 7 9 31\n\
                       IpExt: ListenOverflows\n\
                       IpExt: 5\n";
        // (netstat, expected)
        let cases = [
            (
                netstat,
                ListenQueue {
                    overflows: 7,
                    syn_retransmits: 31,
                },
            ),
            // Another group's counter of the same name is not taken.
            ("IpExt: ListenOverflows\nIpExt: 5\n", ListenQueue::default()),
            // A value that is not a number, or a name with no value, reads 0.
            (
                "TcpExt: ListenOverflows TCPSynRetrans ListenDrops\nTcpExt: x 4\n",
                ListenQueue {
                    syn_retransmits: 4,
                    ..ListenQueue::default()
                },
            ),
            ("", ListenQueue::default()),
        ];
        for (text, want) in cases {
            assert_eq!(ListenQueue::parse(text), want, "{text:?}");
        }
        let before = ListenQueue::parse(netstat);
        let after = ListenQueue {
            overflows: 10,
            syn_retransmits: 30,
        };
        assert_eq!(
            after.since(&before),
            ListenQueue {
                overflows: 3,
                syn_retransmits: 0,
            }
        );
    }

    #[test]
    fn a_stat_line_gives_its_name_parent_and_cpu_ticks() {
        let tail = "S 1 2 3 0 -1 4194560 5 0 0 0 120 35 0 0 20 0 2 0 9 1 2";
        // (line, expected)
        let cases = [
            (format!("42 (phonesim) {tail}"), Some(("phonesim", 1, 155))),
            // A name may hold spaces and parentheses.
            (format!("42 (a (b) c) {tail}"), Some(("a (b) c", 1, 155))),
            ("42 (short) S 1 2".to_owned(), None),
            (format!("42 phonesim {tail}"), None),
            ("42 (x) S 1 2 3 0 -1 4194560 5 0 0 0 n 35".to_owned(), None),
        ];
        for (line, want) in cases {
            let want = want.map(|(name, ppid, ticks)| Stat { name, ppid, ticks });
            assert_eq!(parse_stat(&line), want, "{line:?}");
        }
    }
}
