//! Unit tests of the pgoutput decoder on hand-built messages.

use super::*;
use proptest::prelude::*;

/// Builds a message field by field, in network byte order.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn tag(t: u8) -> W {
        W(vec![t])
    }
    fn u8(mut self, v: u8) -> W {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> W {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn raw(mut self, b: &[u8]) -> W {
        self.0.extend_from_slice(b);
        self
    }
    /// A tuple: `n` null, `u` unchanged, `t:...` text, `b:...` binary.
    fn tuple(mut self, cols: &[&str]) -> W {
        self = self.i16(cols.len() as i16);
        for c in cols {
            self = match *c {
                "n" => self.u8(b'n'),
                "u" => self.u8(b'u'),
                c => {
                    let (kind, v) = c.split_at(2);
                    self.u8(kind.as_bytes()[0])
                        .i32(v.len() as i32)
                        .raw(v.as_bytes())
                }
            };
        }
        self
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

fn dec(w: W) -> Result<Message, PgOutputError> {
    decode(w.bytes())
}

fn texts(t: &TupleData) -> Vec<Option<String>> {
    t.iter()
        .map(|c| match c {
            Column::Null => None,
            Column::UnchangedToast => Some("<toast>".into()),
            Column::Text(v) => Some(String::from_utf8(v.to_vec()).unwrap()),
            Column::Binary(v) => Some(format!("<bin {}>", v.len())),
        })
        .collect()
}

fn relation_msg() -> W {
    W::tag(b'R')
        .u32(16384)
        .str("public")
        .str("todos")
        .u8(b'd')
        .i16(3)
        .u8(1)
        .str("id")
        .u32(20)
        .i32(-1)
        .u8(0)
        .str("title")
        .u32(1043)
        .i32(104)
        .u8(0)
        .str("mood")
        .u32(16390)
        .i32(-1)
}

fn insert_msg() -> W {
    W::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .tuple(&["t:42", "t:hello", "n", "u", "b:\x01\x02"])
}

#[test]
fn begin_commit_origin() {
    let m = dec(W::tag(b'B').u64(0x1_0000_00A0).u64(5).u32(777)).unwrap();
    assert_eq!(
        m,
        Message::Begin(Begin {
            final_lsn: Lsn(0x1_0000_00A0),
            commit_time: PgTimestamp(5),
            xid: 777
        })
    );
    let m = dec(W::tag(b'C').u8(0).u64(10).u64(11).u64(12)).unwrap();
    assert_eq!(
        m,
        Message::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(10),
            end_lsn: Lsn(11),
            commit_time: PgTimestamp(12)
        })
    );
    let m = dec(W::tag(b'O').u64(9).str("node_a")).unwrap();
    assert_eq!(
        m,
        Message::Origin(Origin {
            commit_lsn: Lsn(9),
            name: "node_a".into()
        })
    );
}

#[test]
fn relation_with_columns() {
    let Message::Relation(r) = dec(relation_msg()).unwrap() else {
        panic!("not a relation")
    };
    assert_eq!(r.xid, None);
    assert_eq!(r.oid, Oid(16384));
    assert_eq!((r.schema.as_str(), r.name.as_str()), ("public", "todos"));
    assert_eq!(r.replica_identity, ReplicaIdentity::Default);
    assert_eq!(r.columns.len(), 3);
    assert_eq!(
        r.columns[0],
        RelationColumn {
            is_key: true,
            name: "id".into(),
            type_oid: Oid(20),
            type_modifier: -1
        }
    );
    assert!(!r.columns[1].is_key);
    assert_eq!(r.columns[1].type_modifier, 104);
    assert_eq!(r.columns[2].type_oid, Oid(16390));

    // Empty namespace means pg_catalog; every replica identity letter.
    for (b, ident) in [
        (b'n', ReplicaIdentity::Nothing),
        (b'f', ReplicaIdentity::Full),
        (b'i', ReplicaIdentity::Index),
    ] {
        let m = dec(W::tag(b'R').u32(1).str("").str("t").u8(b).i16(0)).unwrap();
        let Message::Relation(r) = m else { panic!() };
        assert_eq!(r.schema, "pg_catalog");
        assert_eq!(r.replica_identity, ident);
        assert!(r.columns.is_empty());
    }
    assert_eq!(
        dec(W::tag(b'R').u32(1).str("s").str("t").u8(b'x').i16(0)),
        Err(PgOutputError::UnknownReplicaIdentity(b'x'))
    );
    assert_eq!(
        dec(W::tag(b'R').u32(1).str("s").str("t").u8(b'd').i16(-1)),
        Err(PgOutputError::NegativeLength("Relation"))
    );
    // A huge column count with no columns behind it is an error, not an OOM.
    assert_eq!(
        dec(W::tag(b'R').u32(1).str("s").str("t").u8(b'd').i16(i16::MAX)),
        Err(PgOutputError::Truncated("Relation column flags"))
    );
}

#[test]
fn type_message() {
    let m = dec(W::tag(b'Y').u32(16390).str("public").str("mood")).unwrap();
    assert_eq!(
        m,
        Message::Type(TypeMessage {
            xid: None,
            oid: Oid(16390),
            schema: "public".into(),
            name: "mood".into()
        })
    );
}

#[test]
fn insert_with_every_column_kind() {
    let buf = insert_msg().bytes();
    let Message::Insert(i) = decode(buf.clone()).unwrap() else {
        panic!("not an insert")
    };
    assert_eq!(i.relation, Oid(16384));
    assert_eq!(i.new.len(), 5);
    assert!(!i.new.is_empty());
    assert_eq!(
        texts(&i.new),
        vec![
            Some("42".into()),
            Some("hello".into()),
            None,
            Some("<toast>".into()),
            Some("<bin 2>".into())
        ]
    );
    assert_eq!(i.new.iter().len(), 5);
    assert_eq!(i.new.get(4), Some(Column::Binary(&[1, 2])));
    assert_eq!(i.new.get(5), None);
    // Values are borrowed from the message buffer: no copies.
    let Some(Column::Text(v)) = i.new.get(1) else {
        panic!()
    };
    let range = buf.as_ptr_range();
    assert!(range.contains(&v.as_ptr()));
    let shared = i.new.slice(v);
    assert_eq!(&shared[..], b"hello");
    assert_eq!(shared.as_ptr(), v.as_ptr());
    assert!(i.new.slice(b"").is_empty());
    // Empty text value.
    let m = dec(W::tag(b'I').u32(1).u8(b'N').tuple(&["t:"])).unwrap();
    let Message::Insert(i) = m else { panic!() };
    assert_eq!(i.new.get(0), Some(Column::Text(b"")));
}

#[test]
fn update_variants() {
    let plain = dec(W::tag(b'U').u32(7).u8(b'N').tuple(&["t:1", "u"])).unwrap();
    let Message::Update(u) = plain else { panic!() };
    assert_eq!(u.old, None);
    assert_eq!(
        texts(&u.new),
        vec![Some("1".into()), Some("<toast>".into())]
    );

    let key = W::tag(b'U')
        .u32(7)
        .u8(b'K')
        .tuple(&["t:1", "n"])
        .u8(b'N')
        .tuple(&["t:2", "t:x"]);
    let Message::Update(u) = dec(key).unwrap() else {
        panic!()
    };
    let Some(OldTuple::Key(old)) = &u.old else {
        panic!("no key")
    };
    assert_eq!(texts(old), vec![Some("1".into()), None]);
    assert_eq!(texts(&u.new), vec![Some("2".into()), Some("x".into())]);

    let full = W::tag(b'U')
        .u32(7)
        .u8(b'O')
        .tuple(&["t:1", "t:old"])
        .u8(b'N')
        .tuple(&["t:1", "t:new"]);
    let Message::Update(u) = dec(full).unwrap() else {
        panic!()
    };
    let Some(old @ OldTuple::Full(_)) = &u.old else {
        panic!("no old row")
    };
    assert_eq!(
        texts(old.tuple()),
        vec![Some("1".into()), Some("old".into())]
    );

    // Old tuple not followed by N.
    let bad = W::tag(b'U').u32(7).u8(b'K').tuple(&["t:1"]).u8(b'K');
    assert_eq!(
        dec(bad),
        Err(PgOutputError::UnexpectedMarker {
            expected: "N",
            found: b'K'
        })
    );
    assert_eq!(
        dec(W::tag(b'U').u32(7).u8(b'Z')),
        Err(PgOutputError::UnexpectedMarker {
            expected: "N",
            found: b'Z'
        })
    );
}

#[test]
fn delete_variants() {
    let Message::Delete(d) = dec(W::tag(b'D').u32(7).u8(b'K').tuple(&["t:9"])).unwrap() else {
        panic!()
    };
    assert_eq!(d.relation, Oid(7));
    assert!(matches!(d.old, OldTuple::Key(_)));
    assert_eq!(texts(d.old.tuple()), vec![Some("9".into())]);
    let Message::Delete(d) = dec(W::tag(b'D').u32(7).u8(b'O').tuple(&["t:9", "n"])).unwrap() else {
        panic!()
    };
    assert!(matches!(d.old, OldTuple::Full(_)));
    assert_eq!(
        dec(W::tag(b'D').u32(7).u8(b'N').tuple(&["t:9"])),
        Err(PgOutputError::UnexpectedMarker {
            expected: "K or O",
            found: b'N'
        })
    );
}

#[test]
fn truncate() {
    let m = dec(W::tag(b'T').i32(2).u8(3).u32(10).u32(11)).unwrap();
    assert_eq!(
        m,
        Message::Truncate(Truncate {
            xid: None,
            cascade: true,
            restart_identity: true,
            relations: vec![Oid(10), Oid(11)]
        })
    );
    let Message::Truncate(t) = dec(W::tag(b'T').i32(0).u8(0)).unwrap() else {
        panic!()
    };
    assert!(!t.cascade && !t.restart_identity && t.relations.is_empty());
    assert_eq!(
        dec(W::tag(b'T').i32(i32::MAX).u8(0).u32(1)),
        Err(PgOutputError::Truncated("Truncate relations"))
    );
    assert_eq!(
        dec(W::tag(b'T').i32(-1).u8(0)),
        Err(PgOutputError::NegativeLength("Truncate"))
    );
}

#[test]
fn logical_message() {
    let buf = W::tag(b'M')
        .u8(1)
        .u64(99)
        .str("realtime")
        .i32(3)
        .raw(b"abc")
        .bytes();
    let Message::Message(m) = decode(buf.clone()).unwrap() else {
        panic!()
    };
    assert!(m.transactional);
    assert_eq!(m.lsn, Lsn(99));
    assert_eq!(m.prefix, "realtime");
    assert_eq!(&m.content[..], b"abc");
    assert_eq!(m.content.as_ptr(), buf[buf.len() - 3..].as_ptr());
    let Message::Message(m) = dec(W::tag(b'M').u8(0).u64(1).str("p").i32(0)).unwrap() else {
        panic!()
    };
    assert!(!m.transactional && m.content.is_empty());
    assert_eq!(
        dec(W::tag(b'M').u8(0).u64(1).str("p").i32(-5)),
        Err(PgOutputError::NegativeLength("Message"))
    );
    assert_eq!(
        dec(W::tag(b'M').u8(0).u64(1).str("p").i32(4).raw(b"abc")),
        Err(PgOutputError::Truncated("Message content"))
    );
}

#[test]
fn streamed_transactions_carry_xids() {
    let mut d = Decoder::new();
    assert!(!d.in_stream());
    let start = d.decode(W::tag(b'S').u32(500).u8(1).bytes()).unwrap();
    assert_eq!(
        start,
        Message::StreamStart {
            xid: 500,
            first_segment: true
        }
    );
    assert!(d.in_stream());
    let rel = W::tag(b'R').u32(500).raw(&relation_msg().0[1..]).bytes();
    let Message::Relation(r) = d.decode(rel).unwrap() else {
        panic!()
    };
    assert_eq!((r.xid, r.oid), (Some(500), Oid(16384)));
    let ins = W::tag(b'I').u32(500).raw(&insert_msg().0[1..]).bytes();
    let Message::Insert(i) = d.decode(ins).unwrap() else {
        panic!()
    };
    assert_eq!((i.xid, i.relation, i.new.len()), (Some(500), Oid(16384), 5));
    let ty = W::tag(b'Y').u32(500).u32(1).str("s").str("t").bytes();
    assert!(matches!(
        d.decode(ty).unwrap(),
        Message::Type(TypeMessage { xid: Some(500), .. })
    ));
    let tr = W::tag(b'T').u32(500).i32(1).u8(0).u32(3).bytes();
    assert!(matches!(
        d.decode(tr).unwrap(),
        Message::Truncate(Truncate { xid: Some(500), .. })
    ));
    let msg = W::tag(b'M').u32(500).u8(1).u64(1).str("p").i32(0).bytes();
    assert!(matches!(
        d.decode(msg).unwrap(),
        Message::Message(LogicalMessage { xid: Some(500), .. })
    ));
    // A failed decode leaves the state alone.
    assert!(d.decode(Bytes::from_static(b"S")).is_err());
    assert!(d.in_stream());
    assert_eq!(d.decode(W::tag(b'E').bytes()).unwrap(), Message::StreamStop);
    assert!(!d.in_stream());
    let commit = W::tag(b'c').u32(500).u8(0).u64(1).u64(2).u64(3).bytes();
    assert_eq!(
        d.decode(commit).unwrap(),
        Message::StreamCommit(StreamCommit {
            xid: 500,
            flags: 0,
            commit_lsn: Lsn(1),
            end_lsn: Lsn(2),
            commit_time: PgTimestamp(3)
        })
    );
    let abort = Message::StreamAbort {
        xid: 500,
        subxid: 501,
    };
    assert_eq!(
        d.decode(W::tag(b'A').u32(500).u32(501).bytes()).unwrap(),
        abort
    );
    // Protocol 4 abort LSN and time are tolerated.
    let v4 = W::tag(b'A').u32(500).u32(501).u64(7).u64(8).bytes();
    assert_eq!(d.decode(v4).unwrap(), abort);
}

#[test]
fn garbage_is_an_error() {
    assert_eq!(decode(Bytes::new()), Err(PgOutputError::Empty));
    assert_eq!(dec(W::tag(b'z')), Err(PgOutputError::UnknownTag(b'z')));
    assert_eq!(
        dec(W::tag(b'E').u8(0)),
        Err(PgOutputError::TrailingBytes(1))
    );
    assert_eq!(
        dec(W::tag(b'O').u64(1).raw(b"no nul")),
        Err(PgOutputError::Unterminated("Origin name"))
    );
    assert_eq!(
        dec(W::tag(b'I').u32(1).u8(b'N').i16(1).u8(b'x')),
        Err(PgOutputError::UnknownColumnKind(b'x'))
    );
    assert_eq!(
        dec(W::tag(b'I').u32(1).u8(b'N').i16(-1)),
        Err(PgOutputError::NegativeLength("tuple"))
    );
    assert_eq!(
        dec(W::tag(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(-1)),
        Err(PgOutputError::NegativeLength("tuple column"))
    );
    assert_eq!(
        dec(W::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(5)
            .raw(b"abc")),
        Err(PgOutputError::Truncated("tuple column value"))
    );
    assert_eq!(
        dec(W::tag(b'I').u32(1).u8(b'N').i16(2).u8(b'n')),
        Err(PgOutputError::Truncated("tuple column"))
    );
    // Names in another encoding decode lossily instead of failing.
    let m = dec(W::tag(b'O').u64(1).raw(b"n\xffx\0")).unwrap();
    assert_eq!(
        m,
        Message::Origin(Origin {
            commit_lsn: Lsn(1),
            name: "n\u{fffd}x".into()
        })
    );
}

#[test]
fn every_strict_prefix_of_a_valid_message_is_an_error() {
    let valid = [
        W::tag(b'B').u64(1).u64(2).u32(3),
        W::tag(b'C').u8(0).u64(1).u64(2).u64(3),
        W::tag(b'O').u64(1).str("x"),
        relation_msg(),
        W::tag(b'Y').u32(1).str("s").str("t"),
        insert_msg(),
        W::tag(b'U')
            .u32(7)
            .u8(b'O')
            .tuple(&["t:1", "n"])
            .u8(b'N')
            .tuple(&["t:1", "u"]),
        W::tag(b'D').u32(7).u8(b'K').tuple(&["t:9"]),
        W::tag(b'T').i32(1).u8(0).u32(10),
        W::tag(b'M').u8(1).u64(1).str("p").i32(2).raw(b"hi"),
        W::tag(b'S').u32(1).u8(0),
        W::tag(b'c').u32(1).u8(0).u64(1).u64(2).u64(3),
        W::tag(b'A').u32(1).u32(2),
    ];
    for w in valid {
        let full = w.bytes();
        decode(full.clone()).unwrap_or_else(|e| panic!("{full:?}: {e}"));
        for n in 0..full.len() {
            // `A` accepts an optional 16-byte tail, so none of its prefixes
            // can be mistaken for it; every other prefix must fail.
            assert!(decode(full.slice(..n)).is_err(), "prefix {n} of {full:?}");
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut d = Decoder::new();
        let bytes = Bytes::from(data);
        if let Ok(m) = d.decode(bytes.clone()) {
            visit(&m);
        }
        let _ = decode(bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..4,
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let w = [insert_msg(), relation_msg(), W::tag(b'M').u8(1).u64(1).str("p").i32(2).raw(b"hi"),
            W::tag(b'U').u32(7).u8(b'K').tuple(&["t:1", "n"]).u8(b'N').tuple(&["t:2", "t:x"])];
        let mut v = w.into_iter().nth(which).unwrap().0;
        let i = at.index(v.len());
        v[i] = byte;
        if let Ok(m) = decode(Bytes::from(v)) {
            visit(&m);
        }
    }
}

/// Touches every column of every tuple of a decoded message.
fn visit(m: &Message) {
    let tuples: Vec<&TupleData> = match m {
        Message::Insert(i) => vec![&i.new],
        Message::Update(u) => u.old.iter().map(OldTuple::tuple).chain([&u.new]).collect(),
        Message::Delete(d) => vec![d.old.tuple()],
        _ => vec![],
    };
    for t in tuples {
        assert_eq!(t.iter().count(), t.len());
    }
}
