//! Row images in pgoutput messages (TupleData), kept as slices of the
//! message: the column layout is validated once when the message is
//! decoded, then values are borrowed from the buffer, never copied.

use bytes::Bytes;

use super::pgoutput::PgOutputError;

/// One column value of a [`TupleData`], borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column<'a> {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that was not sent.
    UnchangedToast,
    /// `t`: the type's text output.
    Text(&'a [u8]),
    /// `b`: the type's binary send format (only if binary mode was asked for).
    Binary(&'a [u8]),
}

/// A row image: column entries validated at decode time, kept as a slice of
/// the message. Iterate with [`TupleData::iter`]; turn a borrowed value back
/// into shared [`Bytes`] with [`TupleData::slice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleData {
    /// The column entries (after the Int16 count), already validated.
    raw: Bytes,
    /// Number of entries in `raw`.
    nr_columns: u16,
}

impl TupleData {
    /// Number of columns.
    pub fn len(&self) -> usize {
        usize::from(self.nr_columns)
    }

    /// Whether the tuple has no columns.
    pub fn is_empty(&self) -> bool {
        self.nr_columns == 0
    }

    /// The column values in attribute order.
    pub fn iter(&self) -> TupleIter<'_> {
        TupleIter {
            rest: &self.raw,
            left: self.nr_columns,
        }
    }

    /// The value of column `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<Column<'_>> {
        self.iter().nth(i)
    }

    /// A borrowed value from [`iter`](Self::iter) as a `Bytes` sharing this
    /// tuple's buffer (no copy).
    ///
    /// `value` must come from this tuple; anything else is a logic error
    /// that panics (inside `Bytes::slice_ref`).
    pub fn slice(&self, value: &[u8]) -> Bytes {
        if value.is_empty() {
            return Bytes::new();
        }
        self.raw.slice_ref(value)
    }

    /// Wraps entries already checked by [`validate`](Self::validate).
    pub(crate) fn new(raw: Bytes, nr_columns: u16) -> TupleData {
        TupleData { raw, nr_columns }
    }

    /// Walks `n` column entries at the start of `buf`, returning the byte
    /// length they occupy.
    pub(crate) fn validate(buf: &[u8], n: u16) -> Result<usize, PgOutputError> {
        let mut pos = 0usize;
        for _ in 0..n {
            let kind = *buf
                .get(pos)
                .ok_or(PgOutputError::Truncated("tuple column"))?;
            pos += 1;
            match kind {
                b'n' | b'u' => {}
                b't' | b'b' => {
                    let len = buf
                        .get(pos..pos + 4)
                        .ok_or(PgOutputError::Truncated("tuple column length"))?;
                    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                    let len = usize::try_from(len)
                        .map_err(|_| PgOutputError::NegativeLength("tuple column"))?;
                    pos += 4;
                    if buf.len() - pos < len {
                        return Err(PgOutputError::Truncated("tuple column value"));
                    }
                    pos += len;
                }
                other => return Err(PgOutputError::UnknownColumnKind(other)),
            }
        }
        Ok(pos)
    }
}

/// Iterator over the columns of a [`TupleData`].
#[derive(Debug, Clone)]
pub struct TupleIter<'a> {
    /// Entries not yet yielded (validated, so parsing cannot fail).
    rest: &'a [u8],
    /// How many entries remain.
    left: u16,
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = Column<'a>;

    fn next(&mut self) -> Option<Column<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (&kind, rest) = self.rest.split_first()?;
        self.rest = rest;
        match kind {
            b'n' => Some(Column::Null),
            b'u' => Some(Column::UnchangedToast),
            _ => {
                let len = self.rest.get(..4)?;
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let value = self.rest.get(4..4 + len)?;
                self.rest = &self.rest[4 + len..];
                Some(if kind == b't' {
                    Column::Text(value)
                } else {
                    Column::Binary(value)
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for TupleIter<'_> {}

/// The old row image of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity key columns are meaningful (others null).
    Key(TupleData),
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}
