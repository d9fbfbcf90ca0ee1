//! Decoding the server messages that are not timed deliveries: replies,
//! channel closes and errors, `system` messages.

use realtime::proto::phoenix::{decode_text, InPayload, Vsn};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A server message that is not a timed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `phx_reply`: `ok` when status is `"ok"`; `response` is raw JSON.
    Reply {
        /// The topic replied on.
        topic: String,
        /// The ref replied to, as a plain string.
        msg_ref: Option<String>,
        /// Whether status was `ok`.
        ok: bool,
        /// The raw `response` JSON.
        response: String,
    },
    /// `phx_close` (channel ended).
    Close {
        /// The topic closed.
        topic: String,
    },
    /// `phx_error` (channel crashed).
    ChannelError {
        /// The topic.
        topic: String,
    },
    /// `system` with status `error` (a shutdown reason) or `ok`.
    System {
        /// Whether status was `ok`.
        ok: bool,
        /// The message text.
        message: String,
    },
    /// `presence_state`, `presence_diff`, `broadcast` without timestamp, ...
    Other(String),
    /// Not decodable.
    Malformed,
}

/// `phx_reply` payload.
#[derive(Deserialize)]
struct ReplyPayload<'a> {
    #[serde(borrow)]
    status: &'a str,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
}

/// `system` payload.
#[derive(Deserialize)]
struct SystemPayload {
    status: Option<String>,
    message: Option<String>,
}

/// Classifies a text frame that is not a timed delivery.
pub fn control(vsn: Vsn, frame: &[u8]) -> Control {
    let Ok(m) = decode_text(vsn, frame) else {
        return Control::Malformed;
    };
    let InPayload::Json(payload) = m.payload else {
        return Control::Malformed;
    };
    let topic = m.topic.into_owned();
    match &*m.event {
        "phx_reply" => {
            let Ok(r) = serde_json::from_str::<ReplyPayload>(payload.get()) else {
                return Control::Malformed;
            };
            Control::Reply {
                topic,
                msg_ref: m
                    .msg_ref
                    .as_ref()
                    .and_then(|r| r.as_plain_str().map(|s| s.into_owned())),
                ok: r.status == "ok",
                response: r.response.map_or_else(String::new, |v| v.get().to_string()),
            }
        }
        "phx_close" => Control::Close { topic },
        "phx_error" => Control::ChannelError { topic },
        "system" => {
            let s: SystemPayload = serde_json::from_str(payload.get()).unwrap_or(SystemPayload {
                status: None,
                message: None,
            });
            Control::System {
                ok: s.status.as_deref() == Some("ok"),
                message: s.message.unwrap_or_default(),
            }
        }
        other => Control::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_closes_and_system_messages() {
        let r =
            br#"["5","5","realtime:r","phx_reply",{"response":{"reason":"x"},"status":"error"}]"#;
        assert_eq!(
            control(Vsn::V2, r),
            Control::Reply {
                topic: "realtime:r".into(),
                msg_ref: Some("5".into()),
                ok: false,
                response: r#"{"reason":"x"}"#.into()
            }
        );
        let ok = br#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"hb","topic":"phoenix"}"#;
        assert!(matches!(
            control(Vsn::V1, ok),
            Control::Reply { ok: true, ref msg_ref, .. } if msg_ref.as_deref() == Some("hb")
        ));
        let v1 = br#"{"event":"phx_close","payload":{},"ref":"5","topic":"realtime:r"}"#;
        assert_eq!(
            control(Vsn::V1, v1),
            Control::Close {
                topic: "realtime:r".into()
            }
        );
        let err = br#"["5","5","realtime:r","phx_error",{}]"#;
        assert_eq!(
            control(Vsn::V2, err),
            Control::ChannelError {
                topic: "realtime:r".into()
            }
        );
        let sys = br#"["5",null,"realtime:r","system",{"message":"Too many messages per second","status":"error","extension":"system"}]"#;
        assert_eq!(
            control(Vsn::V2, sys),
            Control::System {
                ok: false,
                message: "Too many messages per second".into()
            }
        );
        let state = br#"["5",null,"realtime:r","presence_state",{}]"#;
        assert_eq!(
            control(Vsn::V2, state),
            Control::Other("presence_state".into())
        );
        assert_eq!(control(Vsn::V2, b"nope"), Control::Malformed);
    }
}
