//! `phx_leave`: `ok` reply to the leave's ref, then the channel closes with
//! `phx_close` carrying the join ref. Leaving a topic that is not joined
//! gets the `ok` reply only.

use crate::proto::phoenix::Inbound;
use crate::realtime::state::{Env, Flow, Session};

/// Handles a leave.
pub fn handle(session: &mut Session, env: &mut Env<'_>, msg: Inbound<'_>) -> Flow {
    let join_ref = session
        .channels
        .get(msg.topic.as_ref())
        .and_then(|c| c.join_ref.clone())
        .or_else(|| msg.join_ref.clone());
    session.reply(
        join_ref.as_ref(),
        msg.msg_ref.as_ref(),
        &msg.topic,
        "ok",
        b"{}",
    );
    if let Some(ch) = session.remove_channel(env, &msg.topic) {
        session.push_close(&ch);
    }
    Flow::Continue
}
