//! `access_token`: the client refreshes a channel's token. Never answered.
//! Ignored when the value is null, an opaque `sb_` key, or the current
//! token; otherwise re-validated, and a failure shuts the channel down with
//! the reason (PROTOCOL 3.6).
//!
//! A private channel's read policies are asked again under the new claims
//! (its write policies are forgotten, asked again when next needed): no
//! read left shuts it with `You do not have permissions to read ...`, a
//! read lost while another stays with `You no longer have permission ...`.

use std::rc::Rc;

use crate::proto::phoenix::{InPayload, Inbound};
use crate::realtime::auth;
use crate::realtime::authz::{
    self, AuthAnswer, AuthContext, AuthRequest, Authorize, Pending, PendingToken, Policies,
};
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
    let headers = session.headers_json();
    let Some(ch) = session.channels.get_mut(msg.topic.as_ref()) else {
        return Flow::Continue;
    };
    if auth::is_opaque_api_key(token) || token == &*ch.token {
        return Flow::Continue;
    }
    let cfg = env.tenant.config.clone();
    let token = auth::clean_token(token);
    match auth::verify_channel(&token, &cfg.jwt, &cfg.validators, env.now_unix) {
        Ok(claims) if ch.private => {
            let ctx = AuthContext::new(ch.sub_topic(), &claims, headers);
            return Flow::Authorize(Box::new(Authorize {
                request: AuthRequest {
                    ctx: ctx.clone(),
                    read: Some(ch.presence_enabled),
                    write: false,
                },
                then: Pending::AccessToken(Box::new(PendingToken {
                    topic: ch.topic.clone(),
                    channel: ch.id,
                    token: Rc::from(token),
                    claims,
                    ctx,
                })),
            }));
        }
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

/// A private channel's re-check under its new token arrived: the channel
/// takes the token and the new read policies, or is shut down.
pub fn resume(
    session: &mut Session,
    env: &mut Env<'_>,
    t: PendingToken,
    answer: AuthAnswer,
) -> Flow {
    let Some(ch) = session
        .channels
        .get_mut(&t.topic)
        .filter(|c| c.id == t.channel)
    else {
        return Flow::Continue;
    };
    let refused = match answer {
        Ok(p) if !p.can_read() => authz::unauthorized(&t.ctx.topic),
        Ok(p) if ch.policies.read_revoked(&p) => authz::revoked(&t.ctx.topic),
        Ok(p) => {
            ch.token = t.token;
            env.tenant
                .cdc
                .update_claims(ch.id, super::phx_join::sub_claims(&t.claims));
            ch.exp = t.claims.exp;
            ch.auth = Some(t.ctx);
            ch.policies = Policies {
                broadcast_read: p.broadcast_read,
                presence_read: p.presence_read,
                ..Policies::default()
            };
            let (b, pr) = ch.reads();
            env.tenant.hub.set_reads(ch.key(), ch.id, b, pr);
            return Flow::Continue;
        }
        Err(e) => e.refresh_message(&t.ctx.topic),
    };
    session.shutdown_channel(env, &t.topic, &refused);
    Flow::Continue
}
