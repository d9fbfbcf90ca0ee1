//! Builders for hand-made pgoutput messages, decoded by the real decoder.

use bytes::Bytes;

use crate::proto::pg::pgoutput::Relation;
use crate::proto::pg::pgoutput::{decode, Message};

/// A pgoutput message written field by field.
#[derive(Default)]
pub(crate) struct W(Vec<u8>);

impl W {
    pub(crate) fn tag(t: u8) -> W {
        W(vec![t])
    }
    pub(crate) fn u8(mut self, v: u8) -> W {
        self.0.push(v);
        self
    }
    pub(crate) fn i16(mut self, v: i16) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i32(mut self, v: i32) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i64(mut self, v: i64) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn str(mut self, s: &str) -> W {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    /// A tuple: `n` null, `u` unchanged TOAST, `b:...` binary, else text.
    pub(crate) fn tuple(mut self, cols: &[&str]) -> W {
        self = self.i16(cols.len() as i16);
        for c in cols {
            self = match *c {
                "n" => self.u8(b'n'),
                "u" => self.u8(b'u'),
                c if c.starts_with("b:") => {
                    let v = &c.as_bytes()[2..];
                    let mut w = self.u8(b'b').i32(v.len() as i32);
                    w.0.extend_from_slice(v);
                    w
                }
                c => {
                    let mut w = self.u8(b't').i32(c.len() as i32);
                    w.0.extend_from_slice(c.as_bytes());
                    w
                }
            };
        }
        self
    }
    /// The bytes as written (for messages fed to a decoder under test).
    pub(crate) fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
    pub(crate) fn decode(self) -> Message {
        decode(Bytes::from(self.0)).expect("valid pgoutput message")
    }
}

/// Relation OID used by every builder.
pub(crate) const REL_OID: i32 = 16_384;

/// A relation `public.<name>` with replica identity `identity` (`d`, `f`,
/// `i`, `n`) and columns `(name, type oid, key flag)`.
pub(crate) fn relation(name: &str, identity: u8, cols: &[(&str, u32, bool)]) -> Relation {
    let mut w = W::tag(b'R')
        .i32(REL_OID)
        .str("public")
        .str(name)
        .u8(identity)
        .i16(cols.len() as i16);
    for &(n, t, key) in cols {
        w = w.u8(u8::from(key)).str(n).i32(t as i32).i32(-1);
    }
    match w.decode() {
        Message::Relation(r) => r,
        other => panic!("not a relation: {other:?}"),
    }
}

/// An Insert of `new`.
pub(crate) fn insert(new: &[&str]) -> Message {
    W::tag(b'I').i32(REL_OID).u8(b'N').tuple(new).decode()
}

/// An Update; `old` is `(b'K' | b'O', tuple)` when sent.
pub(crate) fn update(old: Option<(u8, &[&str])>, new: &[&str]) -> Message {
    let mut w = W::tag(b'U').i32(REL_OID);
    if let Some((kind, t)) = old {
        w = w.u8(kind).tuple(t);
    }
    w.u8(b'N').tuple(new).decode()
}

/// A Delete with a `K` or `O` old tuple.
pub(crate) fn delete(kind: u8, old: &[&str]) -> Message {
    W::tag(b'D').i32(REL_OID).u8(kind).tuple(old).decode()
}
