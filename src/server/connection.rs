//! One socket whose request head is read: the REST API, or a WebSocket
//! session (upgrade checks, then the read loop; its frames are written by
//! its queue, see `outq` and the writing rule in `sock`).

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use realtime_shards::ShardStats;

use super::conns::Conn;
use super::deadline::within;
use super::fault::{self, Boundary};
use super::http_api;
use super::outq::{CloseReason, OutQueue, OutState};
use super::replay;
use super::rls;
use super::shard::{now_unix, ShardState};
use super::sock::SharedStream;
use super::tenants::{self, Resolved};
use crate::proto::phoenix::{self, Vsn};
use crate::proto::{http, ws};
use crate::realtime::auth;
use crate::realtime::authz::{AuthError, Authorize};
use crate::realtime::errors::ConnectError;
use crate::realtime::hub::Outbound;
use crate::realtime::replay::PendingReplay;
use crate::realtime::session::{Env, Flow, Session, Tally};
use crate::realtime::tenant::Tenant;

/// How long a closing socket may take to accept its last frames.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(10);
/// Bytes a reader may take in without the socket ever making it wait
/// before it lets the shard write (see [`let_writers_run`]).
pub const READ_BURST: u32 = 64 * 1024;

/// The WebSocket endpoints.
fn is_ws_path(path: &str) -> bool {
    matches!(path, "/socket/websocket" | "/realtime/v1/websocket")
}

/// Serves a socket whose first request head has been read, to the end.
pub async fn serve(
    state: Rc<ShardState>,
    stream: SharedStream,
    head: http::RequestHead,
    buf: BytesMut,
) {
    if is_ws_path(&head.path) {
        let st = state.clone();
        // A panic before the session task exists (the connect checks): the
        // socket is dropped, so closed, and nothing was registered yet.
        if let Err(msg) = fault::caught(websocket(state, stream, head, buf)).await {
            fault::record(&st, Boundary::Connection, "", &msg);
        }
    } else {
        http_api::serve(state, stream, head, buf).await;
    }
}

/// The `x-*` headers of an upgrade request as a JSON object (the last of
/// a repeated name wins), which private channels' checks set as
/// `request.headers`; `None` when there is none.
fn x_headers_json(head: &http::RequestHead) -> Option<Rc<str>> {
    let mut m = serde_json::Map::new();
    for (name, value) in &head.headers {
        if name.starts_with("x-") {
            let v = String::from_utf8_lossy(value).into_owned();
            m.insert(name.clone(), serde_json::Value::String(v));
        }
    }
    (!m.is_empty()).then(|| Rc::from(serde_json::Value::Object(m).to_string()))
}

/// Why a connect was refused (PROTOCOL 1.5).
struct Refusal {
    status: u16,
    /// `None`: empty body and no backoff (bad `vsn`, bad handshake).
    error: Option<String>,
    /// Extra response headers (the version a 426 asks for).
    headers: &'static [(&'static str, &'static str)],
}

impl From<ConnectError> for Refusal {
    fn from(e: ConnectError) -> Self {
        Self {
            status: e.status(),
            error: e.message(),
            headers: &[],
        }
    }
}

struct Accepted {
    vsn: Vsn,
    tenant: Rc<RefCell<Tenant>>,
    token: String,
    key: Vec<u8>,
}

async fn check_connect(
    state: &Rc<ShardState>,
    head: &http::RequestHead,
) -> Result<Accepted, Refusal> {
    let key = match http::check_upgrade(head) {
        Ok(key) => key.to_vec(),
        Err(r) => {
            return Err(Refusal {
                status: r.status(),
                error: None,
                headers: r.headers(),
            })
        }
    };
    let query = head.query.as_deref().unwrap_or("");
    let vsn_param = http::query_param(query, "vsn");
    let vsn = Vsn::negotiate(vsn_param.as_deref()).ok_or(ConnectError::UnsupportedVsn)?;
    let token = match head.header("x-api-key") {
        Some(t) => Some(String::from_utf8_lossy(t).into_owned()),
        None => http::query_param(query, "apikey").map(|t| t.into_owned()),
    };
    let Some(token) = token else {
        return Err(ConnectError::MissingApiKey.into());
    };
    let host = head
        .header("host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("");
    let tenant_id = tenants::id_for_host(state, host);
    let cfg = match tenants::resolve(state, &tenant_id).await {
        Resolved::Found(cfg) => cfg,
        Resolved::NotFound => return Err(ConnectError::TenantNotFound.into()),
        Resolved::Unavailable(e) => {
            tracing::warn!(tenant = %tenant_id, error = %e, "tenant lookup failed; connect refused");
            return Err(ConnectError::Internal.into());
        }
    };
    if cfg.suspended {
        return Err(ConnectError::TenantSuspended.into());
    }
    let token = auth::clean_token(&token);
    if let Err(e) = auth::verify(&token, &cfg.jwt, &cfg.validators, now_unix()) {
        return Err(ConnectError::Token(e).into());
    }
    let tenant = tenants::activate(state, &cfg);
    // A spread tenant new on this shard: its other shards' presence first,
    // so that this socket's joins see all of it.
    if state.presence_syncs.borrow().contains_key(&cfg.external_id) {
        super::forward::presence_synced(state, &cfg.external_id, PRESENCE_SYNC_WAIT).await;
    }
    // The live state may hold newer settings than the lookup (a change
    // went by): its limits are the ones that count.
    let cfg = tenant.borrow().config.clone();
    {
        let mut t = tenant.borrow_mut();
        if t.nr_users() >= cfg.limits.max_concurrent_users {
            return Err(ConnectError::TooManyConnectedUsers.into());
        }
        let now = state.now_ms();
        if t.joins.triggered(cfg.limits.max_joins_per_second, now) {
            return Err(ConnectError::TooManyJoinsPerSecond.into());
        }
    }
    Ok(Accepted {
        vsn,
        tenant,
        token,
        key,
    })
}

async fn websocket(
    state: Rc<ShardState>,
    stream: SharedStream,
    head: http::RequestHead,
    buf: BytesMut,
) {
    let accepted = match check_connect(&state, &head).await {
        Ok(a) => a,
        Err(r) => {
            let resp = match r.error {
                Some(msg) => {
                    glommio::timer::sleep(Duration::from_millis(
                        state.config.connect_error_backoff_ms,
                    ))
                    .await;
                    let body = serde_json::json!({ "error": msg }).to_string();
                    http::response(r.status, Some("application/json"), &[], body.as_bytes())
                }
                None => http::response(r.status, None, r.headers, b""),
            };
            let _ = stream.write_all(&resp).await;
            return;
        }
    };
    if stream
        .write_all(&ws::handshake_response(&accepted.key))
        .await
        .is_err()
    {
        return;
    }
    // Silence is timed by the shard's idle sweep (`last_inbound_ms`).
    stream.clear_read_timeout();

    let id = state.next_conn_id.get() + 1;
    state.next_conn_id.set(id);
    // From here on only the queue writes the socket (see `sock`).
    let out = OutQueue::new(
        state.config.socket_queue_bytes,
        stream.clone(),
        &state.writers,
    );
    let mut session = Session::new(id, accepted.vsn, out.clone(), Rc::from(accepted.token));
    session.last_inbound_ms = state.now_ms() as u32;
    session.x_headers = x_headers_json(&head);
    let conn = Rc::new(Conn {
        session: RefCell::new(session),
        out: out.clone(),
        tenant: accepted.tenant,
    });
    state.sessions.borrow_mut().insert(id, conn.clone());
    ShardStats::gauge(&state.stats().connections, 1);

    drop(head);
    // The session runs in its own task so the handshake's (larger) state
    // machine, request head included, is freed now rather than held for
    // the connection's lifetime.
    glommio::spawn_local(session_task(state, stream, conn, buf)).detach();
}

/// Longest a socket of a spread tenant new on its shard waits for the
/// other shards' presence entries (they answer at once unless stopping).
const PRESENCE_SYNC_WAIT: Duration = Duration::from_secs(2);

/// Drives an upgraded connection: the read loop, then clean-up once the
/// shard's flusher has written what was queued (see `outq`).
/// An `async move` block rather than an `async fn`, which would hold its
/// arguments twice in the task for the connection's whole life.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn session_task(
    state: Rc<ShardState>,
    stream: SharedStream,
    conn: Rc<Conn>,
    mut buf: BytesMut,
) -> impl Future<Output = ()> {
    async move {
        // Nothing else is held across the read loop: the task lives as
        // long as the socket (see `fault::caught` for its size).
        if let Err(msg) = fault::caught(read_loop(&state, &stream, &conn, &mut buf)).await {
            fault::record(&state, Boundary::Connection, &tenant_id(&conn), &msg);
            conn.out.close_with(1011, CloseReason::Panicked);
        }
        let out = conn.out.clone();
        let id = conn.session.borrow().id;

        // Leave everything, then let the flusher write what is queued. The
        // same teardown after a caught panic (see `fault`).
        let closed =
            fault::caught_sync(|| with_env(&state, &conn, |session, env| session.close(env)));
        if let Err(msg) = closed {
            fault::record(&state, Boundary::Connection, &tenant_id(&conn), &msg);
            out.kill();
        }
        if out.state() == OutState::Open {
            // The client went away: nothing queued can reach it.
            out.kill();
        }
        if let Some(reason) = out.reason() {
            tracing::info!(
                conn = id,
                reason = reason.as_str(),
                "socket closed by the server"
            );
            if reason == CloseReason::SlowConsumer {
                ShardStats::add(&state.stats().queue_drops, 1);
            }
        }
        // A closing socket gets its last frames (the close frame among them)
        // unless its peer stops reading for longer than this.
        let settled = within(CLOSE_FLUSH_LIMIT, poll_fn(|cx| out.poll_settled(cx))).await;
        if settled.is_none() {
            out.kill();
        }
        drop(stream);
        state.sessions.borrow_mut().remove(&id);
        ShardStats::gauge(&state.stats().connections, -1);
    }
}

/// The connection's tenant id, for a panic's log line.
fn tenant_id(conn: &Conn) -> String {
    conn.tenant
        .try_borrow()
        .map(|t| t.config.external_id.to_string())
        .unwrap_or_default()
}

/// Runs `f` with the session and a handler environment, then folds the
/// tally into the shard stats and schedules token checks.
pub fn with_env<R>(
    state: &ShardState,
    conn: &Conn,
    f: impl FnOnce(&mut Session, &mut Env<'_>) -> R,
) -> R {
    let mut tenant = conn.tenant.borrow_mut();
    let mut session = conn.session.borrow_mut();
    let mut tally = Tally::default();
    let mut next_id = state.next_channel_id.get();
    let mut env = Env {
        tenant: &mut tenant,
        now_ms: state.now_ms(),
        now_unix: now_unix(),
        settings: &state.settings,
        next_channel_id: &mut next_id,
        shutting_down: state.shutting_down.get(),
        tally: &mut tally,
    };
    let r = f(&mut session, &mut env);
    state.next_channel_id.set(next_id);
    let stats = state.stats();
    if tally.joins > 0 {
        ShardStats::add(&stats.joins, tally.joins);
        state.schedule_expiry(&session);
    }
    if tally.channels != 0 {
        ShardStats::gauge(&stats.channels, tally.channels);
    }
    if tally.replication_waits > 0 {
        state.replication_waiting.borrow_mut().insert(session.id);
    }
    r
}

/// The read side of a session. A plain fn returning an `async move` block:
/// an `async fn` would keep its arguments twice in the future's state, and
/// this future is what each idle socket's task holds.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn read_loop<'a>(
    state: &'a Rc<ShardState>,
    stream: &'a SharedStream,
    conn: &'a Rc<Conn>,
    buf: &'a mut BytesMut,
) -> impl Future<Output = ()> + 'a {
    async move {
        let mut decoder = ws::Decoder::new(state.config.max_frame_size);
        let out = &conn.out;
        // Bytes read since the socket last had nothing to read.
        let mut burst = 0u32;
        loop {
            // Drain every complete frame already buffered.
            loop {
                let forwarded = state.forwarded.get();
                // The message and its step end in this block: only a boxed
                // pointer is held across the await below, not their bytes.
                let slow = {
                    let msg = match decoder.decode(buf) {
                        Ok(Some(m)) => m,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(conn = conn.session.borrow().id, error = %e, "websocket protocol error");
                            out.close_with(e.close_code(), CloseReason::ProtocolError);
                            return;
                        }
                    };
                    if let Some(id) = super::cluster_node::join_to_wait_for(state, conn, &msg) {
                        Some(join_when_subscribed(state, conn, id, msg))
                    } else {
                        match on_message(state, conn, &msg) {
                            Step::Read => None,
                            Step::Stop => return,
                            step => Some(slow_step(state, conn, step, msg)),
                        }
                    }
                };
                if let Some(slow) = slow {
                    if !slow.await {
                        return;
                    }
                }
                if state.forwarded.get() != forwarded && state.outbox.congested() {
                    // Rare: boxed, like the delay above.
                    Box::pin(super::forward::pace(state, PACE_LIMIT)).await;
                }
            }
            if buf.is_empty() {
                // Idle sockets keep no read buffer.
                *buf = BytesMut::new();
            }
            if burst >= READ_BURST {
                burst = 0;
                // Rare: boxed, like the delay above.
                Box::pin(let_writers_run()).await;
            }
            // Data, or `None` once the socket must stop. One closure rather
            // than two racing futures: this is what every idle socket's task
            // holds while it waits.
            let mut waited = false;
            let read = poll_fn(|cx| match stream.poll_read_some(cx, buf) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => {
                    waited = true;
                    out.poll_stopped(cx).map(|()| None)
                }
            })
            .await;
            match read {
                Some(Ok(0)) | Some(Err(_)) | None => return,
                Some(Ok(n)) => {
                    conn.session.borrow_mut().last_inbound_ms = state.now_ms() as u32;
                    ShardStats::add(&state.stats().bytes_in, n as u64);
                    burst = if waited {
                        n as u32
                    } else {
                        burst.saturating_add(n as u32)
                    };
                }
            }
        }
    }
}

/// A step that waits (rare): boxed, so an idle reader's future carries
/// neither its state nor the message that asked for it. Private channels'
/// checks read nothing more from the socket until the answer is in, so its
/// messages keep their order. True: keep reading.
fn slow_step<'a>(
    state: &'a Rc<ShardState>,
    conn: &'a Rc<Conn>,
    step: Step,
    msg: ws::Message,
) -> Pin<Box<dyn Future<Output = bool> + 'a>> {
    match step {
        Step::Read => Box::pin(std::future::ready(true)),
        Step::Stop => Box::pin(std::future::ready(false)),
        Step::Delay(d) => Box::pin(delay(conn, d)),
        Step::Authorize(a) => Box::pin(async move { authorize(state, conn, *a, &msg).await }),
        Step::Replay(r) => Box::pin(replay(state, conn, *r)),
    }
}

/// Pauses a reader whose client sends faster than it can be read, until
/// the shard has run its other tasks and taken in I/O completions.
///
/// While a socket always has data, each read completes at once and its
/// reader would fan out burst after burst without a pause: the flusher
/// never runs and a subscriber whose kernel buffer was full is never told
/// it drained, so subscribers that read as fast as they can would overflow
/// their queues on frames nobody tried to write. A plain yield lets the
/// flusher run but not the reactor; a timer already due by the time the
/// executor next looks makes the reader wait for both, and costs one timer
/// per [`READ_BURST`] bytes only on busy sockets.
pub async fn let_writers_run() {
    glommio::timer::sleep(Duration::from_micros(1)).await;
}

/// The longest a reader is paused at a time for a congested queue to
/// other shards (`forward::pace`).
const PACE_LIMIT: Duration = Duration::from_secs(1);

/// What the read loop does after a message.
enum Step {
    /// Keep reading.
    Read,
    /// Stop reading.
    Stop,
    /// Pause reading, then act (see [`Flow::Delay`]).
    Delay(Delayed),
    /// Pause reading, ask the tenant database, then resume (see
    /// [`Flow::Authorize`]).
    Authorize(Box<Authorize>),
    /// Pause reading, fetch a join's stored messages, then complete it
    /// (see [`Flow::Replay`]).
    Replay(Box<PendingReplay>),
}

/// A paused read: how long, then what to queue and whether to close.
struct Delayed {
    ms: u64,
    frames: Vec<Bytes>,
    close: Option<u16>,
}

/// Handles one WebSocket message.
fn on_message(state: &Rc<ShardState>, conn: &Rc<Conn>, msg: &ws::Message) -> Step {
    let out = &conn.out;
    let vsn = conn.session.borrow().vsn;
    let flow = match msg {
        ws::Message::Text(data) => {
            ShardStats::add(&state.stats().messages_in, 1);
            dispatch(state, conn, phoenix::decode_text(vsn, data))
        }
        ws::Message::Binary(data) => {
            ShardStats::add(&state.stats().messages_in, 1);
            if vsn == Vsn::V1 {
                // The 1.0.0 serializer has no binary form: dropped.
                Flow::Continue
            } else {
                if data.first() == Some(&0) {
                    out.set_kind0();
                }
                dispatch(state, conn, phoenix::decode_binary(data))
            }
        }
        ws::Message::Ping(p) => {
            out.push(ws::server_frame(ws::OpCode::Pong, p));
            Flow::Continue
        }
        ws::Message::Pong(_) => Flow::Continue,
        ws::Message::Close(c) => {
            let code = c.as_ref().map_or(1000, |(code, _)| *code);
            out.close_with(echo_close_code(code), CloseReason::Peer);
            return Step::Stop;
        }
    };
    step_of(out, flow)
}

fn step_of(out: &OutQueue, flow: Flow) -> Step {
    match flow {
        Flow::Continue if out.state() == OutState::Open => Step::Read,
        Flow::Continue => Step::Stop,
        Flow::Delay { ms, frames, close } => Step::Delay(Delayed { ms, frames, close }),
        Flow::Authorize(a) => Step::Authorize(a),
        Flow::Replay(r) => Step::Replay(r),
    }
}

/// Handles a join once this shard's subscription to its topic is in
/// effect at NATS (or [`JOIN_WAIT`](super::cluster::JOIN_WAIT) has
/// passed): a broadcast sent from another node after the client saw its
/// join reply reaches it. The topic is held meanwhile, and until the join
/// is done (then its subscriber holds it, or nothing does). Boxed: rare,
/// once per topic and shard.
fn join_when_subscribed<'a>(
    state: &'a Rc<ShardState>,
    conn: &'a Rc<Conn>,
    id: super::shard::TopicId,
    msg: ws::Message,
) -> Pin<Box<dyn Future<Output = bool> + 'a>> {
    Box::pin(async move {
        let Some(cluster) = state.cluster.clone() else {
            return true;
        };
        cluster.hold(&id);
        let _ = within(super::cluster::JOIN_WAIT, cluster.until_join_ready(&id)).await;
        let go_on = match on_message(state, conn, &msg) {
            Step::Read => true,
            Step::Stop => false,
            step => slow_step(state, conn, step, msg).await,
        };
        if cluster.release(&id) {
            // The join did not become a subscriber (refused, or the socket
            // went): the other nodes' entries heard meanwhile are stale.
            if let Some(t) = state.tenant(&id.0) {
                let key = crate::realtime::hub::TopicKey {
                    topic: &id.2,
                    private: id.1,
                };
                t.borrow_mut().hub.forget_other_nodes(key);
            }
        }
        go_on
    })
}

/// Runs a handler's question on the tenant's authorization pool, hands
/// the answer back, then does what the session says: as after any
/// message, and handling `msg` once more if its channel now knows the
/// policies it lacked. False when the socket must stop reading.
async fn authorize(
    state: &Rc<ShardState>,
    conn: &Rc<Conn>,
    a: Authorize,
    msg: &ws::Message,
) -> bool {
    let cfg = conn.tenant.borrow().config.clone();
    let answer = rls::authorize(state, &cfg, &a.request)
        .await
        .unwrap_or_else(|| {
            Err(AuthError::DatabaseUnavailable(
                "the tenant's home shard gave no answer".into(),
            ))
        });
    if let Err(e) = &answer {
        tracing::warn!(tenant = %cfg.external_id, topic = %a.request.ctx.topic, error = ?e, "private channel policy check failed");
    }
    let out = &conn.out;
    if out.state() != OutState::Open {
        // The socket closed meanwhile (its tenant changed, the client left).
        return false;
    }
    let resumed = with_env(state, conn, |session, env| {
        session.resume(env, a.then, answer)
    });
    let go_on = match step_of(out, resumed.flow) {
        Step::Read => true,
        Step::Stop => false,
        Step::Delay(d) => delay(conn, d).await,
        // A join allowed to read, with a replay to fetch.
        Step::Replay(r) => replay(state, conn, *r).await,
        // A continuation never asks again.
        Step::Authorize(_) => true,
    };
    if !(go_on && resumed.redispatch) {
        return go_on;
    }
    match on_message(state, conn, msg) {
        Step::Read => true,
        Step::Stop => false,
        Step::Delay(d) => delay(conn, d).await,
        // The channel was replaced by one that knows nothing yet: not
        // possible while this socket is not read, and never a loop.
        Step::Authorize(_) | Step::Replay(_) => true,
    }
}

/// Fetches the stored messages a private join asked to replay, then
/// completes (or refuses) the join. False when the socket must stop
/// reading.
async fn replay(state: &Rc<ShardState>, conn: &Rc<Conn>, r: PendingReplay) -> bool {
    let tenant = conn.tenant.borrow().config.clone();
    let answer = replay::fetch_for(state, &tenant, &r.request).await;
    if conn.out.state() != OutState::Open {
        return false;
    }
    let flow = with_env(state, conn, |session, env| session.replayed(env, r, answer));
    match step_of(&conn.out, flow) {
        Step::Delay(d) => delay(conn, d).await,
        Step::Stop => false,
        // Read on; a completed join asks nothing more.
        Step::Read | Step::Authorize(_) | Step::Replay(_) => true,
    }
}

/// Sleeps through a [`Step::Delay`]; false when the socket must stop reading.
async fn delay(conn: &Conn, d: Delayed) -> bool {
    glommio::timer::sleep(Duration::from_millis(d.ms)).await;
    let out = &conn.out;
    for f in d.frames {
        out.push(f);
    }
    if let Some(code) = d.close {
        out.close_with(code, CloseReason::JoinRefused);
        return false;
    }
    out.state() == OutState::Open
}

/// The code to answer a client close with: its own, unless it may not be
/// sent on the wire.
fn echo_close_code(code: u16) -> u16 {
    match code {
        1005 | 1006 | 1015 => 1000,
        c => c,
    }
}

fn dispatch(
    state: &Rc<ShardState>,
    conn: &Rc<Conn>,
    decoded: Result<phoenix::Inbound<'_>, phoenix::DecodeError>,
) -> Flow {
    match decoded {
        Ok(inbound) => with_env(state, conn, |session, env| {
            // Inside the tenant's borrow on purpose: the test proves a
            // panic here leaves it released.
            #[cfg(feature = "fault-injection")]
            if let (phoenix::InPayload::Json(p), "broadcast") =
                (&inbound.payload, inbound.event.as_ref())
            {
                fault::inject("connection handler", p.get().as_bytes());
            }
            session.handle(env, inbound)
        }),
        Err(e) => {
            // Malformed messages are dropped and the socket kept, as the
            // Elixir server does (logged as MalformedWebSocketMessage).
            tracing::debug!(error = %e, "MalformedWebSocketMessage");
            Flow::Continue
        }
    }
}
