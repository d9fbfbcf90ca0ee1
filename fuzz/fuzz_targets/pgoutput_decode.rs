//! Arbitrary bytes through the replication decoders: as a CopyData payload
//! (XLogData whose data is decoded as pgoutput), as a pgoutput message
//! outside and inside a streamed chunk, and as typed JSON input. Every text
//! column of a decoded tuple is converted too. Checks: no panics, converted
//! values are valid JSON, failed conversions leave the buffer untouched.
//!
//! Typed JSON input layout: `[type OID (4 bytes, big-endian), text...]`;
//! an OID the fuzzer's resolver does not know is mapped onto one it does.

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use realtime::proto::pg::pgoutput::{Column, Decoder, Message, TupleData};
use realtime::proto::pg::types::{
    Category, CompositeField, TypeCache, TypeInfo, TypeKind, BUILTIN_TYPES,
};
use realtime::proto::pg::{write_typed, Oid, RelCache, ReplicationMessage};

/// Non-builtin types: a domain, an enum, a composite and their arrays.
fn resolver() -> &'static (TypeCache, Vec<Oid>) {
    static R: OnceLock<(TypeCache, Vec<Oid>)> = OnceLock::new();
    R.get_or_init(|| {
        let mut c = TypeCache::new();
        let mut add = |oid: u32, name: &str, kind| {
            c.insert(
                Oid(oid),
                TypeInfo {
                    name: name.into(),
                    kind,
                },
            );
        };
        add(90001, "posint", TypeKind::Domain { base: Oid(23) });
        add(
            90002,
            "_posint",
            TypeKind::Array {
                elem: Oid(90001),
                delim: b',',
            },
        );
        add(90003, "mood", TypeKind::Scalar(Category::String));
        let field = |name: &str, oid| CompositeField {
            name: name.into(),
            type_oid: Oid(oid),
        };
        add(
            90004,
            "pair",
            TypeKind::Composite {
                fields: vec![
                    field("n", 23),
                    field("label", 25),
                    field("j", 3802),
                    field("tags", 1009),
                ],
            },
        );
        add(
            90005,
            "_pair",
            TypeKind::Array {
                elem: Oid(90004),
                delim: b',',
            },
        );
        add(
            90006,
            "_semi",
            TypeKind::Array {
                elem: Oid(1184),
                delim: b';',
            },
        );
        let mut all: Vec<Oid> = BUILTIN_TYPES.iter().map(|t| t.oid).collect();
        all.extend([90001, 90002, 90003, 90004, 90005, 90006].map(Oid));
        (c, all)
    })
}

/// A known type: `oid` itself if the resolver or table knows it.
fn known(oid: u32) -> Oid {
    let (_, all) = resolver();
    if all.contains(&Oid(oid)) {
        Oid(oid)
    } else {
        all[oid as usize % all.len()]
    }
}

fn convert(oid: Oid, text: &[u8]) {
    let (types, _) = resolver();
    let mut out = Vec::new();
    match write_typed(&mut out, oid, text, types) {
        Ok(()) => {
            // Syntax only: numbers beyond f64 (1e309) are valid JSON.
            if let Err(e) = serde_json::from_slice::<&serde_json::value::RawValue>(&out) {
                panic!(
                    "invalid JSON {:?} for {oid} {:?}: {e}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(text)
                );
            }
        }
        Err(_) => assert!(out.is_empty(), "failed conversion left output"),
    }
}

/// Converts every text column, typing column `i` by the relation if known,
/// else by a type picked from `salt`.
fn tuple(t: &TupleData, rels: &RelCache, rel: Oid, salt: u32) {
    assert_eq!(t.iter().count(), t.len());
    let relation = rels.get(rel);
    for (i, c) in t.iter().enumerate() {
        if let Column::Text(v) = c {
            let oid = relation
                .and_then(|r| r.columns.get(i))
                .map_or_else(|| known(salt.wrapping_add(i as u32)), |c| c.type_oid);
            convert(oid, v);
            assert_eq!(&t.slice(v)[..], v);
        }
    }
}

fn message(dec: &mut Decoder, rels: &mut RelCache, data: Bytes, salt: u32) {
    let Ok(m) = dec.decode(data) else { return };
    rels.apply(&m);
    match &m {
        Message::Insert(i) => tuple(&i.new, rels, i.relation, salt),
        Message::Update(u) => {
            if let Some(old) = &u.old {
                tuple(old.tuple(), rels, u.relation, salt);
            }
            tuple(&u.new, rels, u.relation, salt);
        }
        Message::Delete(d) => tuple(d.old.tuple(), rels, d.relation, salt),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let salt = data
        .iter()
        .fold(0u32, |a, &b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mut rels = RelCache::new();

    // A CopyData payload; XLogData carries one pgoutput message.
    if let Ok(ReplicationMessage::XLogData(x)) = ReplicationMessage::parse(bytes.clone()) {
        message(&mut Decoder::new(), &mut rels, x.data, salt);
    }

    // A pgoutput message outside a stream, then inside one.
    message(&mut Decoder::new(), &mut rels, bytes.clone(), salt);
    let mut streaming = Decoder::new();
    streaming
        .decode(Bytes::from_static(b"S\0\0\x01\xf4\x01"))
        .expect("stream start");
    message(&mut streaming, &mut rels, bytes, salt);

    // Typed JSON directly.
    if data.len() >= 4 {
        let oid = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        convert(known(oid), &data[4..]);
    }
});
