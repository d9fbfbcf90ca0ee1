//! `heartbeat` on topic `phoenix`: always answered `ok` with `{}`, joined
//! or not.

use crate::proto::phoenix::Inbound;
use crate::realtime::state::{Flow, Session};

/// Replies `[null, ref, "phoenix", "phx_reply", {"status":"ok","response":{}}]`.
pub fn handle(session: &mut Session, msg: Inbound<'_>) -> Flow {
    session.reply(None, msg.msg_ref.as_ref(), "phoenix", "ok", b"{}");
    Flow::Continue
}
