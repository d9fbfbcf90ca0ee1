//! The REST API: broadcast (batch and single), health, ping, metrics and
//! the OpenAPI description of them all (`openapi.json`).
//! Connections are kept alive; each request is answered in order.
//!
//! A broadcast request is validated at once and answered once its messages
//! are in the subscribers' queues. Messages are queued one at a time, each
//! only when every subscriber has room for it: a batch larger than a
//! socket's queue goes out at the pace its readers read, rather than
//! overflowing the queues of readers that simply have not been written to
//! yet. A subscriber that leaves no room for `rest_queue_wait_ms` is closed
//! as a slow consumer.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use realtime_shards::ShardStats;

use super::admin_api;
use super::fault::{self, Boundary};
use super::inspector;
use super::rehome;
use super::resp::Resp;
use super::rls;
use super::shard::{now_unix, ShardState};
use super::sock::SharedStream;
use super::tenants::{self, Resolved};
use crate::proto::http::{self, RequestHead};
use crate::proto::phoenix::Encoding;
use crate::realtime::auth;
use crate::realtime::auth::Claims;
use crate::realtime::authz::{AuthContext, AuthRequest};
use crate::realtime::hub::{Outgoing, TopicKey};
use crate::realtime::rest;
use crate::realtime::tenant::TenantConfig;

/// Largest request body accepted, decoded size for a chunked one (a batch of
/// maximum-size payloads is refused by the payload limit long before this).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The OpenAPI 3.1 description of every HTTP endpoint, served at
/// `/api/openapi` (it holds no secret, so no token is asked for).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// What a request asks of the shard.
enum Routed {
    /// Answer now.
    Answer(Resp),
    /// Queue these broadcasts for a tenant's subscribers, then answer.
    Broadcast {
        tenant: String,
        messages: Vec<Broadcast>,
        resp: Resp,
        /// Who asks, when some of `messages` are private.
        private: Option<Box<PrivateSend>>,
    },
}

/// The caller of a request with private messages, whose write policy
/// decides which of them go out (PROTOCOL 4.4, 4.5).
struct PrivateSend {
    /// The tenant, whose database has the policies.
    config: Arc<TenantConfig>,
    /// The caller's verified claims.
    claims: Claims,
    /// Every request header as a JSON object (`request.headers`).
    headers: Rc<str>,
    /// The single endpoint: a refusal is the answer, not a skip.
    single: bool,
}

impl Routed {
    fn resp_mut(&mut self) -> &mut Resp {
        match self {
            Routed::Answer(r) | Routed::Broadcast { resp: r, .. } => r,
        }
    }
}

impl From<Resp> for Routed {
    fn from(r: Resp) -> Self {
        Routed::Answer(r)
    }
}

/// One validated REST message, owned so that it can wait for room.
struct Broadcast {
    /// Client topic (`realtime:<name>`).
    topic: String,
    /// For the private topic of that name, once its write is granted.
    private: bool,
    body: BroadcastBody,
}

enum BroadcastBody {
    /// A batch message: the payload of a `broadcast` event.
    Json(Vec<u8>),
    /// A single-endpoint message: a user broadcast.
    User {
        event: String,
        encoding: Encoding,
        payload: Vec<u8>,
    },
}

impl Broadcast {
    fn outgoing(&self) -> Outgoing<'_> {
        match &self.body {
            BroadcastBody::Json(payload) => Outgoing::Json {
                event: "broadcast",
                payload,
            },
            BroadcastBody::User {
                event,
                encoding,
                payload,
            } => Outgoing::User {
                event,
                encoding: *encoding,
                metadata: b"",
                payload,
            },
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
        // Content-Length or chunked; bad framing and bodies over MAX_BODY
        // (decoded) are answered with an empty error response and closed.
        let mut reader = http::BodyReader::new(&head, MAX_BODY);
        let body = loop {
            match reader.take(&mut buf) {
                Ok(Some(body)) => break body,
                Ok(None) => match stream.read_some(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                Err(e) => {
                    let _ = stream
                        .write_all(&http::response(e.status(), None, &[], b""))
                        .await;
                    return;
                }
            }
        };
        let handled = fault::caught(async {
            let path = route_path(&head);
            if admin_api::is_admin_path(path) {
                return admin_api::serve(&state, &head, path, &body).await;
            }
            if let Some(refused) = prepare_tenant(&state, &head).await {
                return refused;
            }
            match route(&state, &head, &body) {
                Routed::Answer(resp) => resp,
                Routed::Broadcast {
                    tenant,
                    messages,
                    mut resp,
                    private,
                } => {
                    let messages = match private {
                        Some(p) => match authorize(&state, &p, messages).await {
                            Ok(m) => m,
                            Err(refused) => {
                                resp.status = refused.status;
                                resp.content_type = refused.content_type;
                                resp.body = refused.body;
                                return resp;
                            }
                        },
                        None => messages,
                    };
                    deliver(&state, &tenant, messages).await;
                    resp
                }
            }
        })
        .await;
        drop(body);
        let resp = match handled {
            Ok(resp) => resp,
            Err(msg) => {
                // What the request did before it panicked stays done (each
                // message is queued whole or not at all); the client gets
                // an empty 500 and the socket closes.
                let tenant = tenant_of(&state, &head).unwrap_or_default();
                fault::record(&state, Boundary::Request, &tenant, &msg);
                let _ = stream.write_all(&http::response(500, None, &[], b"")).await;
                return;
            }
        };
        let close = head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case(b"close"));
        let extra: Vec<(&str, &str)> = resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let bytes = http::response(resp.status, resp.content_type, &extra, &resp.body);
        if stream.write_all(&bytes).await.is_err() || close {
            return;
        }
        // Next request on the same connection, under the same head deadline.
        head = match stream.read_head(&state.config, &mut buf).await {
            Some(h) => h,
            None => return,
        };
        // Another project's request on this connection goes to that
        // project's home shard, connection and all (see `rehome`).
        let target = rehome::target_shard(&state, &head).await;
        if target != state.shard.id {
            rehome::hand_off(&state, target, stream, head, buf).await;
            return;
        }
    }
}

fn route(state: &ShardState, head: &RequestHead, body: &[u8]) -> Routed {
    let path = route_path(head);
    if let Some(page) = inspector::route(state, &head.method, path) {
        return page.into();
    }
    match (head.method.as_str(), path) {
        ("GET", "/healthcheck") => Resp {
            status: 200,
            content_type: Some("text/plain"),
            headers: Vec::new(),
            body: b"ok".to_vec(),
        }
        .into(),
        ("GET", "/api/ping") => match tenant_of(state, head) {
            Some(_) => Resp::message(200, "Success").into(),
            None => Resp::message(401, "Tenant not found in database").into(),
        },
        ("GET", "/metrics") => super::metrics::render(state, head).into(),
        ("GET", "/api/openapi") => Resp::json(200, OPENAPI_JSON).into(),
        ("OPTIONS", _) => {
            let mut r = Resp::empty(204);
            r.headers
                .push(("access-control-allow-methods", "GET, POST, OPTIONS".into()));
            r.headers.push((
                "access-control-allow-headers",
                "authorization, apikey, content-type, x-client-info".into(),
            ));
            r.into()
        }
        ("POST", "/api/broadcast") => {
            // Plug.Parsers runs before routing: a bad JSON body is a 400
            // whatever else is wrong with the request.
            if let Err(e) = rest::parse_single_json(content_type(head), body) {
                return error(head, &e).into();
            }
            with_tenant(state, head, |t, claims| batch(state, t, claims, head, body))
        }
        ("POST", p) if p.starts_with("/api/broadcast/") => match rest::split_single_path(p) {
            Some((topic, event)) => single(state, head, &topic, &event, body),
            None => Resp::message(404, "not found").into(),
        },
        _ => Resp::message(404, "not found").into(),
    }
}

/// The path the routes match: behind Supabase's gateway the REST API is
/// `/realtime/v1/api/*`, and realtime-js derives that URL from its socket
/// URL, so both are served.
fn route_path(head: &RequestHead) -> &str {
    match head.path.strip_prefix("/realtime/v1") {
        Some(p) if p.starts_with("/api/") => p,
        _ => head.path.as_str(),
    }
}

fn host(head: &RequestHead) -> &str {
    head.header("host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("")
}

/// Makes the Host's tenant active on this shard for the routes that serve
/// a tenant (its settings may have to be read from the control database
/// first). `Some` is the answer when they cannot be read.
async fn prepare_tenant(state: &Rc<ShardState>, head: &RequestHead) -> Option<Resp> {
    let path = route_path(head);
    if path != "/api/ping" && !path.starts_with("/api/broadcast") {
        return None;
    }
    let id = tenants::id_for_host(state, host(head));
    match tenants::resolve(state, &id).await {
        Resolved::Found(cfg) => {
            tenants::activate(state, &cfg);
            None
        }
        Resolved::NotFound => None,
        Resolved::Unavailable(e) => {
            tracing::warn!(tenant = %id, error = %e, "tenant lookup failed; request refused");
            Some(Resp::message(500, "Error reading tenant"))
        }
    }
}

/// The Host's tenant, if it is active here (see [`prepare_tenant`]).
fn tenant_of(state: &ShardState, head: &RequestHead) -> Option<String> {
    let id = tenants::id_for_host(state, host(head));
    state.tenant(&id).map(|_| id)
}

/// Tenant lookup, authentication and the rate-limit plug shared by the
/// broadcast endpoints (PROTOCOL 4.4).
fn with_tenant(
    state: &ShardState,
    head: &RequestHead,
    f: impl FnOnce(&str, Claims) -> Routed,
) -> Routed {
    let Some(tenant_id) = tenant_of(state, head) else {
        return Resp::message(401, "Tenant not found in database").into();
    };
    let Some(tenant) = state.tenant(&tenant_id) else {
        return Resp::message(401, "Tenant not found in database").into();
    };
    let cfg = tenant.borrow().config.clone();
    let limit = cfg.limits.max_events_per_second;
    let avg = tenant.borrow_mut().events.avg(state.now_ms());
    // Whole events per second, as the Elixir plug reports them.
    let rolling = avg as i64;
    let rate_headers = vec![
        ("x-rate-rolling", rolling.to_string()),
        ("x-rate-limit", limit.to_string()),
        (
            "x-rate-limit-remaining",
            (limit as i64 - rolling).to_string(),
        ),
    ];
    let mut routed = if avg >= limit as f64 {
        Resp::message(429, "Too many requests").into()
    } else {
        let authz = head
            .header("authorization")
            .and_then(|h| std::str::from_utf8(h).ok());
        let apikey = head
            .header("apikey")
            .and_then(|h| std::str::from_utf8(h).ok());
        let claims = rest::bearer_or_apikey(authz, apikey).and_then(|token| {
            auth::verify(
                &auth::clean_token(token),
                &cfg.jwt,
                &cfg.validators,
                now_unix(),
            )
            .ok()
        });
        match claims {
            Some(_) if cfg.suspended => Resp::message(403, "Tenant is suspended").into(),
            Some(claims) => f(&tenant_id, claims),
            None => Resp::message(401, "Unauthorized").into(),
        }
    };
    routed.resp_mut().headers.extend(rate_headers);
    routed
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

/// `POST /api/broadcast`: the changeset (422), then the batch's own rate
/// check (429), then the messages to deliver: the public ones in order,
/// then the private ones by topic, as the Elixir server sends them.
fn batch(
    state: &ShardState,
    tenant_id: &str,
    claims: Claims,
    head: &RequestHead,
    body: &[u8],
) -> Routed {
    let Some(tenant) = state.tenant(tenant_id) else {
        return Resp::message(401, "Tenant not found in database").into();
    };
    let mut tenant = tenant.borrow_mut();
    let max = tenant.config.limits.max_payload_bytes();
    let messages = match rest::parse_batch_request(content_type(head), body, max) {
        Ok(m) => m,
        Err(e) => return error(head, &e).into(),
    };
    let avg = tenant.events.avg(state.now_ms());
    let limit = tenant.config.limits.max_events_per_second;
    if let Err(msg) = rest::check_batch_rate(avg, limit, messages.len()) {
        return Resp::message(429, msg).into();
    }
    let mut out: Vec<Broadcast> = messages
        .iter()
        .map(|m| {
            let mut payload = Vec::with_capacity(m.payload.get().len() + m.event.len() + 48);
            m.encode_broadcast_payload(&mut payload);
            Broadcast {
                topic: format!("realtime:{}", m.topic),
                private: m.private,
                body: BroadcastBody::Json(payload),
            }
        })
        .collect();
    let private = out.iter().any(|m| m.private).then(|| {
        // Stable: public first in order, then each private topic's
        // messages together, topics in the order first seen.
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        for (i, m) in out.iter().enumerate() {
            if m.private {
                first_seen.entry(m.topic.clone()).or_insert(i);
            }
        }
        out.sort_by_key(|m| m.private.then(|| first_seen[&m.topic]));
        Box::new(PrivateSend {
            config: tenant.config.clone(),
            claims,
            headers: all_headers_json(head),
            single: false,
        })
    });
    Routed::Broadcast {
        tenant: tenant_id.to_owned(),
        messages: out,
        resp: Resp::empty(202),
        private,
    }
}

/// Every header of a REST request as a JSON object (the last of a
/// repeated name wins), which the private messages' write check sets as
/// `request.headers`.
fn all_headers_json(head: &RequestHead) -> Rc<str> {
    let mut m = serde_json::Map::new();
    for (name, value) in &head.headers {
        let v = String::from_utf8_lossy(value).into_owned();
        m.insert(name.clone(), serde_json::Value::String(v));
    }
    Rc::from(serde_json::Value::Object(m).to_string())
}

/// The private messages of a request, checked against the caller's write
/// policy, one check per topic (run at once, so that the tenant's checker
/// can send them together): the messages that go out, or, for the single
/// endpoint, the refusal to answer.
async fn authorize(
    state: &Rc<ShardState>,
    p: &PrivateSend,
    messages: Vec<Broadcast>,
) -> Result<Vec<Broadcast>, Resp> {
    let mut topics: Vec<&str> = Vec::new();
    for m in messages.iter().filter(|m| m.private) {
        let sub = m.topic.strip_prefix("realtime:").unwrap_or(&m.topic);
        if !topics.contains(&sub) {
            topics.push(sub);
        }
    }
    let checks: Vec<_> = topics
        .iter()
        .map(|topic| {
            let req = AuthRequest {
                ctx: AuthContext::new(topic, &p.claims, p.headers.clone()),
                read: None,
                write: true,
            };
            let (state, config) = (state.clone(), p.config.clone());
            glommio::spawn_local(async move { rls::authorize(&state, &config, &req).await })
        })
        .collect();
    let mut allowed: HashMap<String, bool> = HashMap::new();
    for (topic, check) in topics.iter().zip(checks) {
        let answer = check.await;
        if let Some(Err(e)) = &answer {
            tracing::warn!(tenant = %p.config.external_id, topic, error = ?e, "REST private message policy check failed");
        }
        if p.single {
            let refusal = match &answer {
                Some(a) => rest::single_refusal(a),
                None => Some(rest::UNABLE_TO_AUTHORIZE),
            };
            if let Some((status, msg)) = refusal {
                return Err(Resp::message(status, msg));
            }
        }
        let ok = answer.as_ref().is_some_and(rest::batch_allows);
        allowed.insert(format!("realtime:{topic}"), ok);
    }
    Ok(messages
        .into_iter()
        .filter(|m| !m.private || allowed.get(&m.topic).copied().unwrap_or(false))
        .collect())
}

/// Queues `messages` in order, each once every subscriber of its topic has
/// room for it. A subscriber still without room `rest_queue_wait_ms` after
/// a message first waited is closed as a slow consumer. Each message counts
/// as one event and each frame queued as one more (PROTOCOL 7.3). Messages
/// that went on to other shards wait, as long, for this shard's queues to
/// them to be no longer congested (see `forward::pace`).
async fn deliver(state: &ShardState, tenant_id: &str, messages: Vec<Broadcast>) {
    let wait = Duration::from_millis(state.config.rest_queue_wait_ms);
    for m in &messages {
        // A long batch must not keep the shard's other tasks waiting.
        glommio::yield_if_needed().await;
        let forwarded = state.forwarded.get();
        let mut deadline = None;
        loop {
            let Some(tenant) = state.tenant(tenant_id) else {
                return;
            };
            let full = {
                let mut tenant = tenant.borrow_mut();
                // Inside the tenant's borrow on purpose (see `fault`).
                #[cfg(feature = "fault-injection")]
                if let BroadcastBody::User { event, .. } = &m.body {
                    fault::inject("request handler", event.as_bytes());
                }
                let key = TopicKey {
                    topic: m.topic.as_str(),
                    private: m.private,
                };
                match tenant.hub.fanout_if_room(key, &m.outgoing(), None) {
                    Ok(n) => {
                        tenant.events.add(1 + n, state.now_ms());
                        None
                    }
                    Err(full) => Some(full),
                }
            };
            let Some(full) = full else {
                break;
            };
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + wait);
            super::forward::room_or_overflow(&full, deadline).await;
        }
        if state.forwarded.get() != forwarded && state.outbox.congested() {
            super::forward::pace(state, wait).await;
        }
    }
}

/// `POST /api/broadcast/:topic/events/:event`, in the Elixir server's
/// order: body parse (400/413), content type (415), tenant, rate limit and
/// auth, then the changeset (422).
fn single(state: &ShardState, head: &RequestHead, topic: &str, event: &str, body: &[u8]) -> Routed {
    let ct = content_type(head);
    let parsed = match rest::parse_single_json(ct, body) {
        Ok(p) => p,
        Err(e) => return error(head, &e).into(),
    };
    let kind = match rest::check_single_content_type(ct) {
        Ok(k) => k,
        Err((status, body)) => return Resp::json(status, body).into(),
    };
    with_tenant(state, head, |tenant_id, claims| {
        let Some(tenant) = state.tenant(tenant_id) else {
            return Resp::message(401, "Tenant not found in database").into();
        };
        let tenant = tenant.borrow();
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
            return error(head, &e).into();
        }
        let private = rest::single_private(head.query.as_deref(), parsed.private_override);
        Routed::Broadcast {
            tenant: tenant_id.to_owned(),
            messages: vec![Broadcast {
                topic: format!("realtime:{topic}"),
                private,
                body: BroadcastBody::User {
                    event: event.to_owned(),
                    encoding,
                    payload: payload.to_vec(),
                },
            }],
            resp: Resp::empty(202),
            private: private.then(|| {
                Box::new(PrivateSend {
                    config: tenant.config.clone(),
                    claims,
                    headers: all_headers_json(head),
                    single: true,
                })
            }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;

    #[test]
    fn openapi_description_is_json_of_version_3_1() {
        let doc: serde_json::Value =
            serde_json::from_str(OPENAPI_JSON).expect("openapi.json parses");
        let version = doc["openapi"].as_str().expect("an `openapi` string");
        assert!(version.starts_with("3.1."), "openapi {version}");
        assert!(doc["paths"]["/api/openapi"]["get"].is_object());
    }
}
