//! The `realtime` binary: load the configuration, print where to connect,
//! run the shards until SIGTERM/SIGINT.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them). A background thread returns freed
/// pages to the system after the decay time (10 s), one thread for the whole process: without it, pages are
/// purged only from inside allocation calls, so a shard that went quiet
/// after a burst (a reconnect wave, thousands of new tenants) keeps its
/// peak resident for ever (perf/DECISIONS.md, "Tenants per process").
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 48] = b"background_thread:true,max_background_threads:1\0";

fn main() -> ExitCode {
    let loaded = match realtime::config::load() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("realtime: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = loaded.config;
    if loaded.check_only {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log_level.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let directory = match realtime::server::directory_from_config(&config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("realtime: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let example = realtime::realtime::auth::sign_hs256(
        &config.api_jwt_secret,
        &serde_json::json!({
            "role": "anon",
            "iss": "realtime",
            "exp": realtime::server::shard::now_unix() + 3600 * 24,
        }),
    );
    println!(
        "realtime: tenant `{}` on ws://{}:{}/socket/websocket ({} shards)",
        config.self_host_tenant_name,
        config.bind,
        config.port,
        config.nr_shards()
    );
    let from_file: Vec<&str> = config
        .tenants
        .iter()
        .filter_map(|t| t.get("external_id")?.as_str())
        .collect();
    if !from_file.is_empty() {
        println!(
            "realtime: tenants from the config file (Host <id>.<domain>): {}",
            from_file.join(", ")
        );
    }
    println!("realtime: example token (role anon, valid 24 h): {example}");
    println!(
        "realtime: try  websocat 'ws://{}:{}/socket/websocket?apikey={example}&vsn=2.0.0'",
        config.bind, config.port
    );
    match realtime::server::run(config, directory) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realtime: {e}");
            ExitCode::FAILURE
        }
    }
}
