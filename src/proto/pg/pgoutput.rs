//! Decoder for the messages of the `pgoutput` logical decoding plugin
//! (PostgreSQL "Logical Replication Message Formats").
//!
//! Protocol version 1 in full: Begin, Commit, Origin, Relation, Type, Insert,
//! Update, Delete, Truncate and logical decoding Message. Version 2 adds
//! streamed (in-progress) transactions: Stream Start/Stop/Commit/Abort, and
//! inside a stream every data message carries the transaction id first; the
//! stateful [`Decoder`] tracks Stream Start/Stop to know when that field is
//! there. Two-phase messages (version 3) are rejected as unknown.
//!
//! Tuple data is never copied: a [`TupleData`] is a slice of the message
//! with its column layout validated once, and column values are borrowed
//! from it. Every length is checked; malformed input is a [`PgOutputError`],
//! never a panic.

use bytes::{Buf, Bytes};

use super::replication::{Lsn, PgTimestamp};
pub use super::tuple::{Column, OldTuple, TupleData, TupleIter};
use super::Oid;

/// Why a pgoutput message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgOutputError {
    /// The message was empty.
    #[error("empty pgoutput message")]
    Empty,
    /// The first byte is not a known message type.
    #[error("unknown pgoutput message tag {0:#04x}")]
    UnknownTag(u8),
    /// The message ended inside the named field.
    #[error("pgoutput message truncated in {0}")]
    Truncated(&'static str),
    /// A string field has no NUL terminator.
    #[error("unterminated string in {0}")]
    Unterminated(&'static str),
    /// A count or length field is negative.
    #[error("negative length in {0}")]
    NegativeLength(&'static str),
    /// A tuple column kind other than `n`, `u`, `t`, `b`.
    #[error("unknown tuple column kind {0:#04x}")]
    UnknownColumnKind(u8),
    /// A tuple marker (`N`, `K`, `O`) was expected and something else found.
    #[error("expected {expected} tuple marker, found {found:#04x}")]
    UnexpectedMarker {
        /// What the decoder expected.
        expected: &'static str,
        /// The byte it found.
        found: u8,
    },
    /// A replica identity byte other than `d`, `n`, `f`, `i`.
    #[error("unknown replica identity {0:#04x}")]
    UnknownReplicaIdentity(u8),
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes after pgoutput message")]
    TrailingBytes(usize),
}

/// `B`: a transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the commit record of the transaction.
    pub final_lsn: Lsn,
    /// Commit time of the transaction.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
}

/// `C`: a transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Flags (currently always 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record: the position to confirm once handled.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
}

/// `O`: the transaction was replicated from another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Commit LSN on the origin server.
    pub commit_lsn: Lsn,
    /// Replication origin name.
    pub name: String,
}

/// `relreplident`: which old values UPDATE and DELETE carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: primary key columns.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: the whole old row.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// From the wire byte.
    pub fn from_u8(b: u8) -> Option<ReplicaIdentity> {
        Some(match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            _ => return None,
        })
    }
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity key (flag bit 1).
    pub is_key: bool,
    /// Column name.
    pub name: String,
    /// `atttypid` (a domain's own OID for domain columns).
    pub type_oid: Oid,
    /// `atttypmod` (-1 when none).
    pub type_modifier: i32,
}

/// `R`: the layout of a table, sent before its first change in a session
/// and again whenever it changes. Generated columns are not included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Transaction id (streamed transactions only).
    pub xid: Option<u32>,
    /// `pg_class.oid` of the table.
    pub oid: Oid,
    /// Schema name (`pg_catalog` when the wire had the empty string).
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// Columns in attribute order, dropped and generated ones left out.
    pub columns: Vec<RelationColumn>,
}

/// `Y`: a non-builtin type used by a following Relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// Transaction id (streamed transactions only).
    pub xid: Option<u32>,
    /// `pg_type.oid`.
    pub oid: Oid,
    /// Schema name (`pg_catalog` when the wire had the empty string).
    pub schema: String,
    /// `pg_type.typname`.
    pub name: String,
}

/// `I`: a row was inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Transaction id (streamed transactions only).
    pub xid: Option<u32>,
    /// The table.
    pub relation: Oid,
    /// The new row.
    pub new: TupleData,
}

/// `U`: a row was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Transaction id (streamed transactions only).
    pub xid: Option<u32>,
    /// The table.
    pub relation: Oid,
    /// Old key or row: present when the key changed or identity is FULL.
    pub old: Option<OldTuple>,
    /// The new row (unchanged TOAST values as [`Column::UnchangedToast`]).
    pub new: TupleData,
}

/// `D`: a row was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Transaction id (streamed transactions only).
    pub xid: Option<u32>,
    /// The table.
    pub relation: Oid,
    /// The old key or row.
    pub old: OldTuple,
}

/// `T`: tables were truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Transaction id (streamed transactions only).
    pub xid: Option<u32>,
    /// `TRUNCATE ... CASCADE` (option bit 1).
    pub cascade: bool,
    /// `TRUNCATE ... RESTART IDENTITY` (option bit 2).
    pub restart_identity: bool,
    /// The tables.
    pub relations: Vec<Oid>,
}

/// `M`: a message written with `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Transaction id (streamed transactions only).
    pub xid: Option<u32>,
    /// Emitted inside a transaction (flag bit 1).
    pub transactional: bool,
    /// LSN of the message.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// The content (a slice of the message).
    pub content: Bytes,
}

/// `c`: a streamed transaction committed (protocol 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommit {
    /// Transaction id.
    pub xid: u32,
    /// Flags (currently always 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
}

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `B`
    Begin(Begin),
    /// `C`
    Commit(Commit),
    /// `O`
    Origin(Origin),
    /// `R`
    Relation(Relation),
    /// `Y`
    Type(TypeMessage),
    /// `I`
    Insert(Insert),
    /// `U`
    Update(Update),
    /// `D`
    Delete(Delete),
    /// `T`
    Truncate(Truncate),
    /// `M`
    Message(LogicalMessage),
    /// `S`: a chunk of a streamed transaction starts (protocol 2).
    StreamStart {
        /// Transaction id.
        xid: u32,
        /// This is the transaction's first chunk.
        first_segment: bool,
    },
    /// `E`: the current chunk of a streamed transaction ends (protocol 2).
    StreamStop,
    /// `c` (protocol 2).
    StreamCommit(StreamCommit),
    /// `A`: a streamed (sub)transaction aborted (protocol 2).
    StreamAbort {
        /// Top-level transaction id.
        xid: u32,
        /// Aborted subtransaction id (equal to `xid` for the whole thing).
        subxid: u32,
    },
}

/// Stateful pgoutput decoder: knows whether it is inside a streamed chunk,
/// where data messages carry a transaction id.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    /// Between Stream Start and Stream Stop.
    in_stream: bool,
}

impl Decoder {
    /// A decoder outside any streamed chunk.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Whether the last message left the stream inside a streamed chunk.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Decodes one message (an XLogData payload) and updates the stream
    /// state. On error the state is unchanged.
    pub fn decode(&mut self, data: Bytes) -> Result<Message, PgOutputError> {
        let msg = decode_message(data, self.in_stream)?;
        match msg {
            Message::StreamStart { .. } => self.in_stream = true,
            Message::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(msg)
    }
}

/// Decodes one message outside any streamed chunk (protocol 1 framing).
pub fn decode(data: Bytes) -> Result<Message, PgOutputError> {
    decode_message(data, false)
}

/// A cursor over one message.
struct Reader {
    /// The whole message.
    buf: Bytes,
    /// Next byte to read.
    pos: usize,
}

impl Reader {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], PgOutputError> {
        if self.buf.len() - self.pos < n {
            return Err(PgOutputError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PgOutputError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, PgOutputError> {
        Ok(self.take(2, what)?.get_i16())
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, PgOutputError> {
        Ok(self.take(4, what)?.get_i32())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PgOutputError> {
        Ok(self.take(4, what)?.get_u32())
    }

    fn lsn(&mut self, what: &'static str) -> Result<Lsn, PgOutputError> {
        Ok(Lsn(self.take(8, what)?.get_u64()))
    }

    fn time(&mut self, what: &'static str) -> Result<PgTimestamp, PgOutputError> {
        Ok(PgTimestamp(self.take(8, what)?.get_i64()))
    }

    fn oid(&mut self, what: &'static str) -> Result<Oid, PgOutputError> {
        Ok(Oid(self.u32(what)?))
    }

    /// A NUL-terminated string. Names are decoded lossily: a database in a
    /// non-UTF-8 encoding must not stall the stream.
    fn string(&mut self, what: &'static str) -> Result<String, PgOutputError> {
        let rest = &self.buf[self.pos..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PgOutputError::Unterminated(what))?;
        let s = String::from_utf8_lossy(&rest[..nul]).into_owned();
        self.pos += nul + 1;
        Ok(s)
    }

    /// A schema name: the empty string stands for `pg_catalog`.
    fn namespace(&mut self, what: &'static str) -> Result<String, PgOutputError> {
        let s = self.string(what)?;
        Ok(if s.is_empty() { "pg_catalog".into() } else { s })
    }

    fn xid_if(&mut self, in_stream: bool) -> Result<Option<u32>, PgOutputError> {
        if in_stream {
            Ok(Some(self.u32("xid")?))
        } else {
            Ok(None)
        }
    }

    /// Int16 column count followed by the entries; the result shares `buf`.
    fn tuple(&mut self) -> Result<TupleData, PgOutputError> {
        let n = self.i16("tuple column count")?;
        let n = u16::try_from(n).map_err(|_| PgOutputError::NegativeLength("tuple"))?;
        let len = TupleData::validate(&self.buf[self.pos..], n)?;
        let raw = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(TupleData::new(raw, n))
    }

    fn marker(&mut self, expected: &'static str) -> Result<u8, PgOutputError> {
        self.u8(expected)
    }

    fn finish(&self) -> Result<(), PgOutputError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(PgOutputError::TrailingBytes(n)),
        }
    }
}

fn decode_message(data: Bytes, in_stream: bool) -> Result<Message, PgOutputError> {
    let tag = *data.first().ok_or(PgOutputError::Empty)?;
    let mut r = Reader { buf: data, pos: 1 };
    let msg = match tag {
        b'B' => Message::Begin(Begin {
            final_lsn: r.lsn("Begin final LSN")?,
            commit_time: r.time("Begin commit time")?,
            xid: r.u32("Begin xid")?,
        }),
        b'C' => Message::Commit(Commit {
            flags: r.u8("Commit flags")?,
            commit_lsn: r.lsn("Commit LSN")?,
            end_lsn: r.lsn("Commit end LSN")?,
            commit_time: r.time("Commit time")?,
        }),
        b'O' => Message::Origin(Origin {
            commit_lsn: r.lsn("Origin LSN")?,
            name: r.string("Origin name")?,
        }),
        b'R' => Message::Relation(relation(&mut r, in_stream)?),
        b'Y' => Message::Type(TypeMessage {
            xid: r.xid_if(in_stream)?,
            oid: r.oid("Type OID")?,
            schema: r.namespace("Type namespace")?,
            name: r.string("Type name")?,
        }),
        b'I' => {
            let xid = r.xid_if(in_stream)?;
            let relation = r.oid("Insert relation")?;
            match r.marker("N")? {
                b'N' => {}
                found => return Err(unexpected("N", found)),
            }
            Message::Insert(Insert {
                xid,
                relation,
                new: r.tuple()?,
            })
        }
        b'U' => {
            let xid = r.xid_if(in_stream)?;
            let relation = r.oid("Update relation")?;
            let (old, marker) = match r.marker("K, O or N")? {
                b'K' => (Some(OldTuple::Key(r.tuple()?)), r.marker("N")?),
                b'O' => (Some(OldTuple::Full(r.tuple()?)), r.marker("N")?),
                m => (None, m),
            };
            if marker != b'N' {
                return Err(unexpected("N", marker));
            }
            Message::Update(Update {
                xid,
                relation,
                old,
                new: r.tuple()?,
            })
        }
        b'D' => {
            let xid = r.xid_if(in_stream)?;
            let relation = r.oid("Delete relation")?;
            let old = match r.marker("K or O")? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                found => return Err(unexpected("K or O", found)),
            };
            Message::Delete(Delete { xid, relation, old })
        }
        b'T' => {
            let xid = r.xid_if(in_stream)?;
            let n = r.i32("Truncate relation count")?;
            let n = usize::try_from(n).map_err(|_| PgOutputError::NegativeLength("Truncate"))?;
            let options = r.u8("Truncate options")?;
            if (r.buf.len() - r.pos) / 4 < n {
                return Err(PgOutputError::Truncated("Truncate relations"));
            }
            let mut relations = Vec::with_capacity(n);
            for _ in 0..n {
                relations.push(r.oid("Truncate relation")?);
            }
            Message::Truncate(Truncate {
                xid,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
                relations,
            })
        }
        b'M' => {
            let xid = r.xid_if(in_stream)?;
            let flags = r.u8("Message flags")?;
            let lsn = r.lsn("Message LSN")?;
            let prefix = r.string("Message prefix")?;
            let len = r.i32("Message length")?;
            let len = usize::try_from(len).map_err(|_| PgOutputError::NegativeLength("Message"))?;
            r.take(len, "Message content")?;
            Message::Message(LogicalMessage {
                xid,
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content: r.buf.slice(r.pos - len..r.pos),
            })
        }
        b'S' => Message::StreamStart {
            xid: r.u32("Stream Start xid")?,
            first_segment: r.u8("Stream Start flag")? == 1,
        },
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit(StreamCommit {
            xid: r.u32("Stream Commit xid")?,
            flags: r.u8("Stream Commit flags")?,
            commit_lsn: r.lsn("Stream Commit LSN")?,
            end_lsn: r.lsn("Stream Commit end LSN")?,
            commit_time: r.time("Stream Commit time")?,
        }),
        b'A' => {
            let msg = Message::StreamAbort {
                xid: r.u32("Stream Abort xid")?,
                subxid: r.u32("Stream Abort subxid")?,
            };
            // Protocol 4 appends the abort LSN and time; tolerate them.
            if r.buf.len() - r.pos == 16 {
                r.pos += 16;
            }
            msg
        }
        other => return Err(PgOutputError::UnknownTag(other)),
    };
    r.finish()?;
    Ok(msg)
}

fn unexpected(expected: &'static str, found: u8) -> PgOutputError {
    PgOutputError::UnexpectedMarker { expected, found }
}

fn relation(r: &mut Reader, in_stream: bool) -> Result<Relation, PgOutputError> {
    let xid = r.xid_if(in_stream)?;
    let oid = r.oid("Relation OID")?;
    let schema = r.namespace("Relation namespace")?;
    let name = r.string("Relation name")?;
    let ident = r.u8("Relation replica identity")?;
    let replica_identity =
        ReplicaIdentity::from_u8(ident).ok_or(PgOutputError::UnknownReplicaIdentity(ident))?;
    let n = r.i16("Relation column count")?;
    let n = usize::try_from(n).map_err(|_| PgOutputError::NegativeLength("Relation"))?;
    // Each column takes at least 10 bytes: refuse absurd counts before
    // allocating for them.
    let mut columns = Vec::with_capacity(n.min((r.buf.len() - r.pos) / 10));
    for _ in 0..n {
        columns.push(RelationColumn {
            is_key: r.u8("Relation column flags")? & 1 != 0,
            name: r.string("Relation column name")?,
            type_oid: r.oid("Relation column type")?,
            type_modifier: r.i32("Relation column typmod")?,
        });
    }
    Ok(Relation {
        xid,
        oid,
        schema,
        name,
        replica_identity,
        columns,
    })
}

#[cfg(test)]
#[path = "pgoutput_tests.rs"]
mod tests;
