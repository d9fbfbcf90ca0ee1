//! The REST API: broadcast (batch and single), health, ping and metrics.
//! Connections are kept alive; each request is answered in order.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use realtime_shards::ShardStats;

use super::connection::{read_head, read_some, write_all, SharedStream};
use super::{now_unix, ShardState};
use crate::proto::http::{self, RequestHead};
use crate::proto::phoenix::Encoding;
use crate::realtime::auth;
use crate::realtime::hub::Outgoing;
use crate::realtime::rest;

/// Largest request body accepted (a batch of maximum-size payloads is
/// refused by the payload limit long before this).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A response ready to write.
struct Resp {
    status: u16,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type: Some("application/json"),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn message(status: u16, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({ "message": message }).to_string(),
        )
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// Serves requests on one socket until it closes or asks to.
pub async fn serve(
    state: Rc<ShardState>,
    stream: SharedStream,
    mut head: RequestHead,
    mut buf: BytesMut,
) {
    loop {
        ShardStats::add(&state.stats().http_requests, 1);
        let len = match http::content_length(&head) {
            Ok(l) => l.unwrap_or(0),
            Err(_) => {
                let _ = write_all(&stream, &http::response(411, None, &[], b"")).await;
                return;
            }
        };
        if len > MAX_BODY {
            let _ = write_all(&stream, &http::response(413, None, &[], b"")).await;
            return;
        }
        while buf.len() < len {
            match read_some(&stream, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body = buf.split_to(len);
        let resp = route(&state, &head, &body);
        let close = head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case(b"close"));
        let extra: Vec<(&str, &str)> = resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let bytes = http::response(resp.status, resp.content_type, &extra, &resp.body);
        if write_all(&stream, &bytes).await.is_err() || close {
            return;
        }
        // Next request on the same connection, under the same head deadline.
        head = match read_head(&state, &stream, &mut buf).await {
            Some(h) => h,
            None => return,
        };
    }
}

fn route(state: &ShardState, head: &RequestHead, body: &[u8]) -> Resp {
    // Behind Supabase's gateway the REST API is `/realtime/v1/api/*`, and
    // realtime-js derives that URL from its socket URL: serve both.
    let path = match head.path.strip_prefix("/realtime/v1") {
        Some(p) if p.starts_with("/api/") => p,
        _ => head.path.as_str(),
    };
    match (head.method.as_str(), path) {
        ("GET", "/healthcheck") => Resp {
            status: 200,
            content_type: Some("text/plain"),
            headers: Vec::new(),
            body: b"ok".to_vec(),
        },
        ("GET", "/api/ping") => match tenant_of(state, head) {
            Some(_) => Resp::message(200, "Success"),
            None => Resp::message(401, "Tenant not found in database"),
        },
        ("GET", "/metrics") => metrics(state, head),
        ("OPTIONS", _) => {
            let mut r = Resp::empty(204);
            r.headers
                .push(("access-control-allow-methods", "GET, POST, OPTIONS".into()));
            r.headers.push((
                "access-control-allow-headers",
                "authorization, apikey, content-type, x-client-info".into(),
            ));
            r
        }
        ("POST", "/api/broadcast") => {
            // Plug.Parsers runs before routing: a bad JSON body is a 400
            // whatever else is wrong with the request.
            if let Err(e) = rest::parse_single_json(content_type(head), body) {
                return error(head, &e);
            }
            with_tenant(state, head, |t| batch(state, t, head, body))
        }
        ("POST", p) if p.starts_with("/api/broadcast/") => match rest::split_single_path(p) {
            Some((topic, event)) => single(state, head, &topic, &event, body),
            None => Resp::message(404, "not found"),
        },
        _ => Resp::message(404, "not found"),
    }
}

fn tenant_of(state: &ShardState, head: &RequestHead) -> Option<String> {
    let host = head
        .header("host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("");
    let id = state.directory.tenant_id_for_host(host);
    state.directory.get(&id).map(|_| id.into_owned())
}

/// Tenant lookup, authentication and the rate-limit plug shared by the
/// broadcast endpoints (PROTOCOL 4.4).
fn with_tenant(state: &ShardState, head: &RequestHead, f: impl FnOnce(&str) -> Resp) -> Resp {
    let Some(tenant_id) = tenant_of(state, head) else {
        return Resp::message(401, "Tenant not found in database");
    };
    let Some(tenant) = state.tenant(&tenant_id) else {
        return Resp::message(401, "Tenant not found in database");
    };
    let cfg = tenant.borrow().config.clone();
    let limit = cfg.limits.max_events_per_second;
    let avg = tenant.borrow_mut().events.avg(state.now_ms());
    let rate_headers = vec![
        ("x-rate-rolling", format!("{avg:?}")),
        ("x-rate-limit", limit.to_string()),
        (
            "x-rate-limit-remaining",
            format!("{:?}", limit as f64 - avg),
        ),
    ];
    let mut resp = if avg >= limit as f64 {
        Resp::message(429, "Too many requests")
    } else {
        let authz = head
            .header("authorization")
            .and_then(|h| std::str::from_utf8(h).ok());
        let apikey = head
            .header("apikey")
            .and_then(|h| std::str::from_utf8(h).ok());
        match rest::bearer_or_apikey(authz, apikey) {
            Some(token)
                if auth::verify(
                    &auth::clean_token(token),
                    &cfg.jwt,
                    &cfg.validators,
                    now_unix(),
                )
                .is_ok() =>
            {
                if cfg.suspended {
                    Resp::message(403, "Tenant is suspended")
                } else {
                    f(&tenant_id)
                }
            }
            _ => Resp::message(401, "Unauthorized"),
        }
    };
    resp.headers.extend(rate_headers);
    resp
}

fn content_type(head: &RequestHead) -> Option<&str> {
    head.header("content-type")
        .and_then(|h| std::str::from_utf8(h).ok())
}

/// A request error rendered the way Phoenix renders it for this request's
/// `Accept` header.
fn error(head: &RequestHead, e: &rest::BatchError) -> Resp {
    let accept = head
        .header("accept")
        .and_then(|h| std::str::from_utf8(h).ok());
    let (ct, body) = e.render(accept);
    Resp {
        status: e.status(),
        content_type: Some(ct),
        headers: Vec::new(),
        body,
    }
}

fn batch(state: &ShardState, tenant_id: &str, head: &RequestHead, body: &[u8]) -> Resp {
    let Some(tenant) = state.tenant(tenant_id) else {
        return Resp::message(401, "Tenant not found in database");
    };
    let mut tenant = tenant.borrow_mut();
    let max = tenant.config.limits.max_payload_bytes();
    let messages = match rest::parse_batch_request(content_type(head), body, max) {
        Ok(m) => m,
        Err(e) => return error(head, &e),
    };
    let now = state.now_ms();
    let mut deliveries = 0;
    let mut payload = Vec::with_capacity(256);
    for m in &messages {
        if m.private {
            // Private topics need the write policy of the tenant database;
            // without one the message is skipped, as a denied one would be.
            continue;
        }
        payload.clear();
        m.encode_broadcast_payload(&mut payload);
        tenant.events.add(1, now);
        deliveries += tenant.hub.fanout(
            &format!("realtime:{}", m.topic),
            &Outgoing::Json {
                event: "broadcast",
                payload: &payload,
            },
            None,
        );
    }
    tenant.events.add(deliveries, now);
    Resp::empty(202)
}

/// `POST /api/broadcast/:topic/events/:event`, in the Elixir server's
/// order: body parse (400/413), content type (415), tenant, rate limit and
/// auth, then the changeset (422).
fn single(state: &ShardState, head: &RequestHead, topic: &str, event: &str, body: &[u8]) -> Resp {
    let ct = content_type(head);
    let parsed = match rest::parse_single_json(ct, body) {
        Ok(p) => p,
        Err(e) => return error(head, &e),
    };
    let kind = match rest::check_single_content_type(ct) {
        Ok(k) => k,
        Err((status, body)) => return Resp::json(status, body),
    };
    with_tenant(state, head, |tenant_id| {
        let Some(tenant) = state.tenant(tenant_id) else {
            return Resp::message(401, "Tenant not found in database");
        };
        let mut tenant = tenant.borrow_mut();
        let (encoding, payload, size) = match kind {
            rest::SingleKind::Json => (
                Encoding::Json,
                parsed.payload.as_ref(),
                parsed.external_size,
            ),
            rest::SingleKind::Binary => (
                Encoding::Binary,
                body,
                rest::binary_external_size(body.len()),
            ),
        };
        if let Err(e) =
            rest::validate_single(topic, event, size, tenant.config.limits.max_payload_bytes())
        {
            return error(head, &e);
        }
        if rest::single_private(head.query.as_deref(), parsed.private_override) {
            // Private sends need the tenant database's write policy.
            return Resp::message(422, "Tenant database unavailable");
        }
        let now = state.now_ms();
        tenant.events.add(1, now);
        let n = tenant.hub.fanout(
            &format!("realtime:{topic}"),
            &Outgoing::User {
                event,
                encoding,
                metadata: b"",
                payload,
            },
            None,
        );
        tenant.events.add(n, now);
        Resp::empty(202)
    })
}

fn metrics(state: &ShardState, head: &RequestHead) -> Resp {
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
    let series: [Series; 11] = [
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
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, s) in state.shard.stats.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(s));
        }
    }
    Resp {
        status: 200,
        content_type: Some("text/plain; version=0.0.4"),
        headers: Vec::new(),
        body: out.into_bytes(),
    }
}
