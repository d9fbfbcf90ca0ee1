//! `access_token`: the client refreshes a channel's token. Never answered.
//! Ignored when the value is null, an opaque `sb_` key, or the current
//! token; otherwise re-validated, and a failure shuts the channel down with
//! the reason (PROTOCOL 3.6).

use std::rc::Rc;

use crate::proto::phoenix::{InPayload, Inbound};
use crate::realtime::auth;
use crate::realtime::state::{Env, Flow, Session};

/// Handles a token refresh.
pub fn handle(session: &mut Session, env: &mut Env<'_>, msg: Inbound<'_>) -> Flow {
    let InPayload::Json(raw) = msg.payload else {
        return Flow::Continue;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(raw.get()) else {
        return Flow::Continue;
    };
    let Some(token) = v.get("access_token").and_then(|t| t.as_str()) else {
        return Flow::Continue;
    };
    let Some(ch) = session.channels.get_mut(msg.topic.as_ref()) else {
        return Flow::Continue;
    };
    if auth::is_opaque_api_key(token) || token == &*ch.token {
        return Flow::Continue;
    }
    let cfg = env.tenant.config.clone();
    let token = auth::clean_token(token);
    match auth::verify_channel(&token, &cfg.jwt, &cfg.validators, env.now_unix) {
        Ok(claims) => {
            ch.token = Rc::from(token);
            // Postgres Changes are authorised with the new claims from now
            // on; the subscription is checked again and confirmed anew.
            env.tenant
                .cdc
                .update_claims(ch.id, super::phx_join::sub_claims(&claims));
            ch.exp = claims.exp;
        }
        Err(e) => {
            let m = e.shutdown_message();
            session.shutdown_channel(env, &msg.topic, &m);
        }
    }
    Flow::Continue
}
