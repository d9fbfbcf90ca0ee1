//! The environment a bench ran in, recorded next to its results so that a
//! number is never read without the machine that produced it.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Facts about the machine, toolchain and source tree of one bench run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// CPUs this process may run on (`available_parallelism`).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo (`unknown` if absent).
    pub cpu_model: String,
    /// `uname -srm` (kernel name, release, machine).
    pub kernel: String,
    /// `rustc -V` at run time (the compiler on PATH, or `$RUSTC`).
    pub rustc: String,
    /// `git rev-parse HEAD` of the tree the benches were built from.
    pub git_commit: String,
    /// Whether tracked files differed from that commit.
    pub git_dirty: bool,
    /// UTC start time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// /proc/loadavg at start: a shared VM's neighbours show up here.
    pub loadavg: String,
}

impl Env {
    /// Captures the environment now. Never fails: a fact that cannot be read
    /// is recorded as `unknown`.
    pub fn capture() -> Env {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let dirty = Command::new("git")
            .current_dir(&repo)
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .map(|o| o.status.success() && !o.stdout.is_empty())
            .unwrap_or(false);
        Env {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            kernel: run(Command::new("uname").arg("-srm")),
            rustc: run(Command::new(rustc).arg("-V")),
            git_commit: run(Command::new("git")
                .current_dir(&repo)
                .args(["rev-parse", "HEAD"])),
            git_dirty: dirty,
            date: utc_now(),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    /// The environment as a JSON object (field names as above).
    pub fn to_json(&self) -> Value {
        json!({
            "nproc": self.nproc,
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
            "rustc": self.rustc,
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "date": self.date,
            "loadavg": self.loadavg,
            "allocator": "jemalloc (tikv-jemallocator, as the server binary)",
            "profile": "bench (inherits release: lto = thin, codegen-units = 4)",
        })
    }
}

/// First line of the command's stdout, or `unknown`.
fn run(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The first `model name` in /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`
/// (proleptic Gregorian calendar, Howard Hinnant's days-to-civil).
fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(format_utc(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn capture_fills_every_field() {
        let env = Env::capture();
        assert!(env.nproc >= 1);
        assert_eq!(env.date.len(), 20);
        let v = env.to_json();
        for key in [
            "nproc",
            "cpu_model",
            "kernel",
            "rustc",
            "git_commit",
            "date",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }
}
