//! Resolving the common options: target check, token, server pid, loadgen
//! cores, descriptor limit, loopback source addresses.

use std::time::Duration;

use crate::cli::{Common, Target};
use crate::conn::Endpoint;
use crate::phx::JoinConfig;
use crate::procfs;
use crate::report::{self, Report};
use crate::rx::Role;

/// Common options resolved into what the executors need.
#[derive(Debug, Clone)]
pub struct Env {
    /// Where to connect.
    pub ep: Endpoint,
    /// The JWT (apikey and REST auth).
    pub token: String,
    /// Token put in joins, if any.
    pub join_token: Option<String>,
    /// Loadgen cores.
    pub cores: Vec<usize>,
    /// Server pid for /proc (the first of `server_pids`).
    pub server_pid: Option<u32>,
    /// Every server pid (a cluster's nodes): CPU and RSS are their sum.
    pub server_pids: Vec<u32>,
    /// nats-server pid, read apart.
    pub nats_pid: Option<u32>,
    /// Per-connection connect/join timeout.
    pub connect_timeout: Duration,
    /// Phoenix heartbeat interval (`None` for peers).
    pub heartbeat: Option<Duration>,
    /// The kind of server.
    pub target: Target,
    /// The options as given.
    pub common: Common,
    /// Caveats found while resolving.
    pub warnings: Vec<String>,
}

/// Connections per loopback source address before spreading over more.
/// The kernel picks an ephemeral port by probing the range for a free
/// 4-tuple; with one source address and ~18k connections to one server
/// port, each `connect()` probed for milliseconds (`__inet_check_established`
/// at 77% of the loadgen's CPU) and the whole executor stalled for seconds.
const CONNS_PER_SOURCE: u64 = 5_000;

impl Env {
    /// Resolves `c` for a Realtime-only scenario opening about `nr_conns`
    /// connections; refuses peer targets.
    pub fn resolve(c: &Common, nr_conns: u64) -> Result<Env, String> {
        if c.target != Target::Realtime {
            return Err(format!(
                "--target {}: this scenario speaks only the Realtime protocol; peers are \
                 supported by `broadcast` and `connect`",
                c.target.name()
            ));
        }
        if c.addr.len() > 1 {
            return Err(
                "--addr: this scenario takes one server; several are for `broadcast` and `connect`"
                    .into(),
            );
        }
        Self::resolve_any(c, nr_conns)
    }

    /// Resolves `c` for a scenario that can also drive the peers.
    pub fn resolve_any(c: &Common, nr_conns: u64) -> Result<Env, String> {
        let mut warnings = Vec::new();
        let token = c.token.clone().unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            realtime::realtime::auth::sign_hs256(
                &c.secret,
                &serde_json::json!({"role": "anon", "iss": "realtime-loadgen", "iat": now, "exp": now + 86_400}),
            )
        });
        let mut server_pids = c.server_pid.clone();
        if server_pids.is_empty() {
            for a in &c.addr {
                match procfs::find_listener_pid(a.port()) {
                    Some(p) if !server_pids.contains(&p) => server_pids.push(p),
                    Some(_) => {}
                    None => warnings.push(format!(
                        "no server pid (none given, no single process listens on port {}): \
                         no server CPU or RSS figures",
                        a.port()
                    )),
                }
            }
            if server_pids.len() < c.addr.len() {
                server_pids.clear();
            }
        }
        let server_pid = server_pids.first().copied();
        let online = procfs::online_cpus();
        let cores = match &c.cores {
            Some(list) => {
                let v = procfs::parse_cpu_list(list);
                if v.is_empty() || v.iter().any(|c| !online.contains(c)) {
                    return Err(format!(
                        "--cores {list:?}: not a list of online cpus {online:?}"
                    ));
                }
                v
            }
            None => {
                let server: Vec<usize> = server_pids
                    .iter()
                    .chain(&c.nats_pid)
                    .flat_map(|&p| procfs::process_cpus(p))
                    .collect();
                let free: Vec<usize> = online
                    .iter()
                    .copied()
                    .filter(|c| !server.contains(c))
                    .collect();
                if free.is_empty() {
                    let last = *online.last().unwrap_or(&0);
                    warnings.push(format!(
                        "the server's threads may run on every core (affinities {server:?}); \
                         loadgen on core {last} shares one (pin every server thread, e.g. \
                         `taskset -a -p -c 0 PID`, or pass --cores)"
                    ));
                    vec![last]
                } else {
                    free
                }
            }
        };
        raise_nofile(nr_conns + 256)?;
        // The monitor thread sleeps almost always; keep it off the server's cores too.
        procfs::pin_current_thread(&cores);
        let source_addrs = if c.source_addrs > 0 {
            c.source_addrs
        } else if nr_conns > CONNS_PER_SOURCE {
            nr_conns.div_ceil(CONNS_PER_SOURCE) as u32
        } else {
            0
        };
        Ok(Env {
            ep: Endpoint {
                addr: c.first_addr(),
                host: c.host.clone().unwrap_or_else(|| c.first_addr().to_string()),
                path: c.path.clone(),
                apikey: token.clone(),
                source_addrs,
                phoenix: c.target == Target::Realtime,
                tenants: 0,
                tenant_prefix: String::new(),
                spread: c.addr.clone(),
                spread_from: 0,
            },
            join_token: (!c.no_join_token).then(|| token.clone()),
            token,
            cores,
            server_pid,
            server_pids,
            nats_pid: c.nats_pid,
            connect_timeout: Duration::from_secs(c.connect_timeout.max(1)),
            heartbeat: (c.target == Target::Realtime)
                .then(|| Duration::from_secs(c.heartbeat_secs.max(1))),
            target: c.target,
            common: c.clone(),
            warnings,
        })
    }

    /// How the receivers should read a connection that plays `role`: peers
    /// have one way of their own, whatever the role.
    pub fn rx_role(&self, role: Role) -> Role {
        match self.target {
            Target::Realtime => role,
            t => Role::Peer(t),
        }
    }

    /// A join config with this run's token.
    pub fn join_config(&self) -> JoinConfig {
        JoinConfig {
            access_token: self.join_token.clone(),
            ..JoinConfig::default()
        }
    }

    /// A report with the run-independent fields filled in.
    pub fn report(&self, scenario: &str, params: serde_json::Value) -> Report {
        Report {
            scenario: scenario.into(),
            target: self.target.name().into(),
            params,
            machine: Some(procfs::Machine::detect()),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            warnings: self.warnings.clone(),
            server: report::ServerUsage {
                pid: self.server_pid,
                pids: self.server_pids.clone(),
                ..Default::default()
            },
            loadgen: report::LoadgenUsage {
                cores: self.cores.clone(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Makes sure this process may open `need` descriptors.
fn raise_nofile(need: u64) -> Result<(), String> {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return Ok(());
        }
        if r.rlim_cur >= need {
            return Ok(());
        }
        let want = need.min(r.rlim_max);
        r.rlim_cur = want;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        if want < need {
            return Err(format!(
                "{need} descriptors needed but the hard limit (ulimit -Hn) is {}: \
                 lower the connection count or raise the limit",
                r.rlim_max
            ));
        }
    }
    Ok(())
}
