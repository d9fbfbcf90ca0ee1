//! `/metrics`: the Prometheus text exposition of every shard's counters
//! (each shard writes only its own row; any shard can read them all).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use realtime_shards::ShardStats;

use super::fault::Boundary;
use super::resp::Resp;
use super::shard::{now_unix, ShardState};
use crate::proto::http::RequestHead;
use crate::realtime::{auth, rest};

/// `GET /metrics`: every series with one sample per shard.
pub fn render(state: &ShardState, head: &RequestHead) -> Resp {
    if let Some(secret) = &state.config.metrics_jwt_secret {
        let authz = head
            .header("authorization")
            .and_then(|h| std::str::from_utf8(h).ok());
        let ok = rest::bearer_or_apikey(authz, None).is_some_and(|t| {
            let cleaned = auth::clean_token(t);
            auth::verify_hs_any(t, secret, now_unix())
                && !state.config.metrics_token_blocklist.contains(&cleaned)
        });
        if !ok {
            return Resp::empty(403);
        }
    }
    let mut out = String::with_capacity(2048);
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&ShardStats) -> i64,
    );
    let series: [Series; 28] = [
        (
            "realtime_db_broadcasts_total",
            "counter",
            "Rows of realtime.messages broadcast.",
            |s| s.db_broadcasts.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_db_broadcast_drops_total",
            "counter",
            "Rows of realtime.messages dropped (UnableToBroadcastChanges).",
            |s| s.db_broadcast_drops.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_connections",
            "gauge",
            "Open WebSocket connections.",
            |s| s.connections.load(Ordering::Relaxed),
        ),
        ("realtime_channels", "gauge", "Joined channels.", |s| {
            s.channels.load(Ordering::Relaxed)
        }),
        (
            "realtime_joins_total",
            "counter",
            "Successful channel joins.",
            |s| s.joins.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_messages_in_total",
            "counter",
            "WebSocket data messages received.",
            |s| s.messages_in.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_messages_out_total",
            "counter",
            "Frames written to sockets.",
            |s| s.messages_out.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_bytes_in_total",
            "counter",
            "Bytes read from WebSockets.",
            |s| s.bytes_in.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_bytes_out_total",
            "counter",
            "Bytes written to WebSockets.",
            |s| s.bytes_out.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_queue_drops_total",
            "counter",
            "Sockets closed for overflowing their outbound queue.",
            |s| s.queue_drops.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_forwards_total",
            "counter",
            "Messages forwarded to another shard with subscribers of their topic (one per target shard).",
            |s| s.forwards_out.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_forward_drops_total",
            "counter",
            "Forwarded messages dropped because the queue to their shard was full.",
            |s| s.forward_drops.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_forward_gap_closes_total",
            "counter",
            "Sockets closed as slow consumers because forwarded messages of their topic were dropped.",
            |s| s.forward_gap_closes.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_nats_connected",
            "gauge",
            "1 per shard connected to NATS (a cluster node); 0 alone.",
            |s| s.nats_up.load(Ordering::Relaxed),
        ),
        (
            "realtime_nats_peers",
            "gauge",
            "Other nodes' shards heard within NODE_TIMEOUT_MS, per shard: the cluster as each shard sees it.",
            |s| s.nats_peers.load(Ordering::Relaxed),
        ),
        (
            "realtime_nats_published_total",
            "counter",
            "Messages published to the other nodes of the cluster.",
            |s| s.nats_out.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_nats_delivered_total",
            "counter",
            "Messages of other nodes delivered to this node's subscribers.",
            |s| s.nats_in.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_nats_drops_total",
            "counter",
            "Messages for the other nodes dropped (NATS unreachable or too slow).",
            |s| s.nats_drops.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_nats_invalid_total",
            "counter",
            "Messages from NATS that were not valid archives (ignored).",
            |s| s.nats_invalid.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_handoffs_total",
            "counter",
            "Sockets received from another shard.",
            |s| s.handoffs_in.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_http_requests_total",
            "counter",
            "REST requests served.",
            |s| s.http_requests.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_accept_failures_total",
            "counter",
            "Failed accepts (descriptor limit); the listener backs off meanwhile.",
            |s| s.accept_failures.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_tenants_active",
            "gauge",
            "Tenants with live state (sockets, topics, counters) on a shard.",
            |s| s.tenants_active.load(Ordering::Relaxed),
        ),
        (
            "realtime_tenant_database_tasks",
            "gauge",
            "Tasks working for tenant databases (replication streams, subscription checkers, schema and partition upkeep).",
            |s| s.tenant_tasks.load(Ordering::Relaxed),
        ),
        (
            "realtime_tenant_lookups_total",
            "counter",
            "Tenant records read from the control database (one per tenant and shard at a time).",
            |s| s.tenant_lookups.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_rls_checks_total",
            "counter",
            "Private-channel policy checks asked.",
            |s| s.rls_checks.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_rls_queries_total",
            "counter",
            "Policy checks run on tenant databases (identical concurrent asks share one).",
            |s| s.rls_queries.load(Ordering::Relaxed) as i64,
        ),
        (
            "realtime_rls_round_trips_total",
            "counter",
            "Round trips of policy checks (checks waiting together go in one).",
            |s| s.rls_round_trips.load(Ordering::Relaxed) as i64,
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, s) in state.shard.stats.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(s));
        }
    }
    // One series per boundary kind (see `fault`); the tenant is in the log
    // line, not a label, so the series count stays fixed.
    let name = "realtime_task_panics_total";
    let _ = writeln!(
        out,
        "# HELP {name} Panics caught at a connection, request or stream boundary.\n# TYPE {name} counter"
    );
    for (i, s) in state.shard.stats.iter().enumerate() {
        for (kind, n) in [
            (Boundary::Connection, &s.panics_connection),
            (Boundary::Request, &s.panics_request),
            (Boundary::Stream, &s.panics_stream),
        ] {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{i}\",kind=\"{}\"}} {}",
                kind.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
    }
    Resp {
        status: 200,
        content_type: Some("text/plain; version=0.0.4"),
        headers: Vec::new(),
        body: out.into_bytes(),
    }
}
