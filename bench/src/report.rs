//! Side files a bench writes next to criterion's own output, for
//! `scripts/bench` to merge into the results: the environment, and notes
//! criterion cannot measure (allocations per operation, frame sizes).
//!
//! Files go to `<criterion home>/realtime-bench/`: `env-<bench>.json` and
//! `notes-<bench>.json` (bench id -> {note: number}). The criterion home is
//! `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
//! workspace's `target/criterion`, which is where criterion itself writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::alloc::AllocStats;
use crate::env::Env;

/// Collects the side files of one bench binary.
#[derive(Debug)]
pub struct Report {
    /// The bench target's name (`ws`, `fanout`, ...).
    bench: &'static str,
    /// Whether this is a real `cargo bench` run (`--bench` on the command
    /// line, no `--test` or `--list`); test-mode runs write nothing.
    enabled: bool,
    /// bench id -> note name -> value, written by [`finish`](Self::finish).
    notes: BTreeMap<String, Map<String, Value>>,
}

impl Report {
    /// Starts the report of bench target `bench`: captures the environment,
    /// prints it, and (in a real bench run) writes `env-<bench>.json`.
    pub fn start(bench: &'static str) -> Report {
        let args: Vec<String> = std::env::args().collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let enabled = has("--bench") && !has("--test") && !has("--list");
        let report = Report {
            bench,
            enabled,
            notes: BTreeMap::new(),
        };
        if enabled {
            let env = Env::capture().to_json();
            eprintln!("realtime-bench {bench}: environment {env}");
            report.write_value(&format!("env-{bench}.json"), &env);
        }
        report
    }

    /// Whether side files are written (false in test mode).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records a number about bench `id` (criterion's full id, e.g.
    /// `fanout/json_text/10000`).
    pub fn note(&mut self, id: &str, name: &str, value: impl Into<Value>) {
        self.notes
            .entry(id.to_owned())
            .or_default()
            .insert(name.to_owned(), value.into());
    }

    /// Records the allocations one operation of bench `id` makes, divided
    /// over `per` units (e.g. deliveries) when `per > 1`.
    pub fn note_allocs(&mut self, id: &str, stats: AllocStats, per: u64) {
        self.note(id, "allocs_per_op", stats.nr_allocs);
        self.note(id, "alloc_bytes_per_op", stats.nr_bytes);
        if per > 1 {
            self.note(id, "allocs_per_unit", stats.nr_allocs as f64 / per as f64);
        }
    }

    /// Writes `notes-<bench>.json` (in a real bench run).
    pub fn finish(mut self) {
        if !self.enabled {
            return;
        }
        let notes: Map<String, Value> = std::mem::take(&mut self.notes)
            .into_iter()
            .map(|(k, v)| (k, Value::Object(v)))
            .collect();
        self.write_value(&format!("notes-{}.json", self.bench), &Value::Object(notes));
    }

    fn write_value(&self, name: &str, value: &Value) {
        let dir = criterion_home().join("realtime-bench");
        let path = dir.join(name);
        let result = std::fs::create_dir_all(&dir).and_then(|()| {
            let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
            std::fs::write(&path, text)
        });
        if let Err(e) = result {
            eprintln!(
                "realtime-bench {}: cannot write {}: {e}",
                self.bench,
                path.display()
            );
        }
    }
}

/// Where criterion writes its results (see the module docs).
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("criterion")
}
