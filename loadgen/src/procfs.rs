//! What /proc says about the server and this machine: CPU time, RSS,
//! the process listening on a port, CPU affinity, the CPU model.
//!
//! The parsers are pure functions over the file text so they can be tested
//! without a live process.

use std::collections::HashSet;

/// `utime + stime` (clock ticks) from the text of `/proc/<pid>/stat`.
/// Fields are counted after the `)` that ends the command name, which may
/// itself contain spaces and parentheses.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime 14 and stime 15 (1-based).
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// From `/proc/<pid>/stat` text: the parent pid, the process's own
/// `utime + stime` and its reaped children's `cutime + cstime` (ticks).
pub fn parse_stat_family(stat: &str) -> Option<(u32, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name: ppid is field 4, utime..cstime fields 14-17 (1-based).
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    let ppid = f.get(1)?.parse().ok()?;
    Some((ppid, num(11)? + num(12)?, num(13)? + num(14)?))
}

/// CPU seconds of process `root` and every live child of it, plus the
/// children it has already reaped (their time moves into its `cutime`,
/// so a backend that exits between two readings is still counted once).
pub fn family_cpu_seconds(root: u32) -> Option<f64> {
    let own = std::fs::read_to_string(format!("/proc/{root}/stat")).ok()?;
    let (_, t, reaped) = parse_stat_family(&own)?;
    let mut ticks = t + reaped;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((ppid, t, _)) = parse_stat_family(&stat) {
            if ppid == root {
                ticks += t;
            }
        }
    }
    Some(ticks as f64 / clk_tck())
}

/// `VmRSS` in bytes from the text of `/proc/<pid>/status`.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The first `model name` in `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Socket inodes listening on `port` in `/proc/net/tcp{,6}` text.
pub fn parse_listen_inodes(net_tcp: &str, port: u16) -> Vec<u64> {
    let want = format!("{port:04X}");
    net_tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            let local = f.get(1)?;
            let (_, p) = local.rsplit_once(':')?;
            (p == want && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// Busy clock ticks (user, nice, system, irq, softirq; not idle, iowait
/// or steal) of the given CPUs, from `/proc/stat` text.
pub fn parse_cpus_busy(stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut total = 0;
    let mut found = 0;
    for line in stat.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(n) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&n) {
            continue;
        }
        let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal ...
        total += v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
        found += 1;
    }
    (found == cpus.len() && found > 0).then_some(total)
}

/// Busy CPU seconds of `cpus` since boot (see [`parse_cpus_busy`]).
pub fn cpus_busy_seconds(cpus: &[usize]) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    Some(parse_cpus_busy(&stat, cpus)? as f64 / clk_tck())
}

/// Clock ticks per second (`_SC_CLK_TCK`).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) used so far by `pid` ("self" for this process).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_stat_ticks(&stat)? as f64 / clk_tck())
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    parse_vmrss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The process holding a socket that listens on TCP `port`, if exactly
/// one process does.
pub fn find_listener_pid(port: u16) -> Option<u32> {
    let mut inodes = HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            inodes.extend(parse_listen_inodes(&t, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let mut found = HashSet::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            if let Some(ino) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            {
                if inodes.contains(&ino) {
                    found.insert(pid);
                    break;
                }
            }
        }
    }
    (found.len() == 1).then(|| found.into_iter().next())?
}

/// The CPUs `pid` may run on (0 = this thread).
pub fn affinity(pid: u32) -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(pid as i32, std::mem::size_of_val(&set), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The CPUs any thread of `pid` may run on (a thread pinned by its runtime
/// can differ from the process's own mask).
pub fn process_cpus(pid: u32) -> Vec<usize> {
    let mut cpus: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .flat_map(affinity)
                .collect()
        })
        .unwrap_or_default();
    if cpus.is_empty() {
        cpus = affinity(pid);
    }
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// Pins the calling thread to `cpus` (ignored when empty or refused).
pub fn pin_current_thread(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: as in `affinity`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// The online CPUs (from this process's view: its own affinity at start).
pub fn online_cpus() -> Vec<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let v = parse_cpu_list(text.trim());
    if v.is_empty() {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        v
    }
}

/// Parses a kernel/taskset CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(c) = part.parse() {
                    out.push(c);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The machine a run happened on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
}

impl Machine {
    /// Reads the machine description.
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Machine {
            nproc: online_cpus().len(),
            cpu_model: parse_cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_odd_command_names() {
        let stat = "1234 (shard (0) x) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn stat_family_fields() {
        let stat = "77 (postgres: walsender (x)) S 12 77 77 0 -1 4194560 1000 0 0 0 250 75 30 12 20 0 1 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_family(stat), Some((12, 325, 42)));
        assert_eq!(parse_stat_family("77 (x) S"), None);
        assert!(family_cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn vmrss_in_bytes() {
        let status = "Name:\trealtime\nVmPeak:\t  10000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(status), Some(2048 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn cpu_model_line() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags: x\n";
        assert_eq!(
            parse_cpu_model(info).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
    }

    #[test]
    fn listening_inodes_by_port() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0FA1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55501 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0FA1 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 55502 1 0000000000000000 20 4 30 10 -1\n   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55503 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_listen_inodes(t, 4001), vec![55501]);
        assert_eq!(parse_listen_inodes(t, 8080), vec![55503]);
        assert!(parse_listen_inodes(t, 1).is_empty());
    }

    #[test]
    fn busy_ticks_of_some_cpus() {
        let stat = "cpu  10 0 10 100 0 0 5 0 0 0\ncpu0 1 2 3 100 7 4 5 9 0 0\ncpu1 10 0 10 50 0 0 1 0 0 0\nintr 5\n";
        assert_eq!(parse_cpus_busy(stat, &[0]), Some(1 + 2 + 3 + 4 + 5));
        assert_eq!(parse_cpus_busy(stat, &[0, 1]), Some(15 + 21));
        assert_eq!(parse_cpus_busy(stat, &[2]), None);
        assert!(cpus_busy_seconds(&[0]).is_some());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6,8-9"), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(parse_cpu_list("1"), vec![1]);
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn this_process_is_visible() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_bytes("self").unwrap() > 0);
        assert!(!affinity(0).is_empty());
        assert!(!process_cpus(std::process::id()).is_empty());
    }
}
