//! One statement with bound parameters over the extended query protocol,
//! sans-io: [`encode_query`] writes the request (Parse, Bind, Describe,
//! Execute, Sync) and [`Reply`] reads the backend frames that answer it, up
//! to ReadyForQuery.
//!
//! Parameters travel as text, apart from the SQL: a value never becomes
//! statement text, whatever it holds. The statement and portal are the
//! unnamed ones, so nothing outlives the call, and parameter types are left
//! for the server to infer from the statement (`$1::jsonb` where it cannot).

use bytes::{BufMut, BytesMut};

/// Most parameters one Bind can carry (its count is a 16-bit field).
pub const MAX_PARAMS: usize = u16::MAX as usize;

/// Result rows of one statement, as text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Values; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Command tag (`SELECT 1`, `INSERT 0 1`, ...).
    pub tag: String,
}

/// A request that cannot be sent as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The SQL text holds a NUL byte (a C string on the wire).
    #[error("the statement contains a NUL byte")]
    NulInSql,
    /// A parameter holds a NUL byte, which no Postgres text value can hold.
    #[error("parameter ${0} contains a NUL byte, which Postgres text cannot hold")]
    NulInParam(usize),
    /// More parameters than a Bind message can count.
    #[error("{0} parameters, more than the {MAX_PARAMS} one statement can bind")]
    TooManyParams(usize),
    /// A value or the statement does not fit a message's 32-bit length.
    #[error("a value of {0} bytes does not fit one protocol message")]
    TooLong(usize),
}

/// An ErrorResponse's main fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbError {
    /// ERROR, FATAL, PANIC.
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    /// Human text.
    pub message: String,
}

/// Reads an ErrorResponse (or NoticeResponse) body field by field; a body
/// cut short yields what was read.
pub fn parse_error_fields(body: &[u8]) -> DbError {
    let mut e = DbError::default();
    let mut rest = body;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let v = String::from_utf8_lossy(&tail[..end]).into_owned();
        match t {
            b'S' => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    e
}

/// Writes Parse, Bind, Describe (portal), Execute and Sync for `sql` with
/// `params` (`None` is NULL) to `buf`. Checks everything first: on error
/// `buf` is untouched, so the connection's stream stays in step.
pub fn encode_query(
    sql: &str,
    params: &[Option<&str>],
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_statement("", Some(sql), params, buf)
}

/// Writes Parse (named `name`) and Sync for `sql`: a statement prepared
/// once per connection and run by [`encode_statement`] without `sql`.
pub fn encode_prepare(name: &str, sql: &str, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if sql.as_bytes().contains(&0) || name.as_bytes().contains(&0) {
        return Err(EncodeError::NulInSql);
    }
    let parse_len = name.len() + 1 + sql.len() + 1 + 2;
    if parse_len > i32::MAX as usize - 4 {
        return Err(EncodeError::TooLong(sql.len()));
    }
    put_parse(name, sql, parse_len, buf);
    buf.put_u8(b'S');
    buf.put_i32(4);
    Ok(())
}

/// Parse of `sql` as statement `name` (its body `parse_len` bytes), no
/// parameter types given.
fn put_parse(name: &str, sql: &str, parse_len: usize, buf: &mut BytesMut) {
    buf.put_u8(b'P');
    buf.put_i32((4 + parse_len) as i32);
    buf.put_slice(name.as_bytes());
    buf.put_u8(0);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
    buf.put_u16(0);
}

/// [`encode_query`] for statement `name`: parsed from `sql` first when
/// given (the unnamed statement is `""`), else one prepared before.
pub fn encode_statement(
    name: &str,
    sql: Option<&str>,
    params: &[Option<&str>],
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if name.as_bytes().contains(&0) || sql.is_some_and(|s| s.as_bytes().contains(&0)) {
        return Err(EncodeError::NulInSql);
    }
    if params.len() > MAX_PARAMS {
        return Err(EncodeError::TooManyParams(params.len()));
    }
    // Body of Bind: portal and statement names, format counts, values.
    let mut bind_len: usize = 1 + 1 + 2 + 2 + 2;
    for (i, p) in params.iter().enumerate() {
        bind_len += 4;
        if let Some(v) = p {
            if v.as_bytes().contains(&0) {
                return Err(EncodeError::NulInParam(i + 1));
            }
            bind_len += v.len();
        }
    }
    bind_len += name.len();
    let parse_len = sql.map_or(0, |sql| name.len() + 1 + sql.len() + 1 + 2);
    let limit = i32::MAX as usize - 4;
    if parse_len > limit {
        return Err(EncodeError::TooLong(parse_len));
    }
    if bind_len > limit {
        return Err(EncodeError::TooLong(bind_len));
    }
    buf.reserve(parse_len + bind_len + 40);
    if let Some(sql) = sql {
        put_parse(name, sql, parse_len, buf);
    }
    // Bind: unnamed portal, all parameters and results text.
    buf.put_u8(b'B');
    buf.put_i32((4 + bind_len) as i32);
    buf.put_u8(0);
    buf.put_slice(name.as_bytes());
    buf.put_u8(0);
    buf.put_u16(0);
    buf.put_u16(params.len() as u16);
    for p in params {
        match p {
            Some(v) => {
                buf.put_i32(v.len() as i32);
                buf.put_slice(v.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    buf.put_u16(0);
    // Describe the portal: its RowDescription names the columns.
    buf.put_u8(b'D');
    buf.put_i32(4 + 2);
    buf.put_u8(b'P');
    buf.put_u8(0);
    // Execute: unnamed portal, every row.
    buf.put_u8(b'E');
    buf.put_i32(4 + 1 + 4);
    buf.put_u8(0);
    buf.put_i32(0);
    // Sync: ends the implicit transaction (unless one is open) and asks for
    // ReadyForQuery, after an error too.
    buf.put_u8(b'S');
    buf.put_i32(4);
    Ok(())
}

/// What one backend frame meant to [`Reply::feed`].
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Keep reading.
    More,
    /// A ParameterStatus: the server changed a reported setting.
    Param(String, String),
    /// ReadyForQuery: the statement's outcome. The connection is ready for
    /// the next request either way.
    Done(Result<Rows, DbError>),
}

/// The backend broke the protocol: the connection's position is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReplyError(pub String);

/// Collects the answer to one [`encode_query`] request.
#[derive(Debug, Default)]
pub struct Reply {
    rows: Rows,
    /// A RowDescription or NoData arrived (DataRow is allowed after the
    /// former only).
    described: Option<usize>,
    /// The first ErrorResponse; the server skips to Sync after it.
    error: Option<DbError>,
}

impl Reply {
    /// A reply not yet begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one backend frame: its tag and its body (without tag and
    /// length).
    pub fn feed(&mut self, tag: u8, body: &[u8]) -> Result<Step, ReplyError> {
        match tag {
            // ParseComplete, BindComplete, EmptyQueryResponse, a notice, a
            // notification of a LISTEN on this session.
            b'1' | b'2' | b'I' | b'N' | b'A' => {}
            b'n' => self.described = Some(0),
            b'T' => {
                self.rows.columns = parse_row_description(body)?;
                self.described = Some(self.rows.columns.len());
            }
            b'D' => {
                let Some(n) = self.described.filter(|&n| n > 0) else {
                    return Err(ReplyError("DataRow without a RowDescription".into()));
                };
                let row = parse_data_row(body)?;
                if row.len() != n {
                    return Err(ReplyError(format!(
                        "DataRow of {} columns after a RowDescription of {n}",
                        row.len()
                    )));
                }
                self.rows.rows.push(row);
            }
            b'C' => self.rows.tag = cstr(body, &mut 0)?,
            // Execute asks for every row, so a suspended portal is a bug.
            b's' => return Err(ReplyError("portal suspended".into())),
            b'E' => {
                if self.error.is_none() {
                    self.error = Some(parse_error_fields(body));
                }
            }
            b'S' => {
                let mut at = 0;
                let name = cstr(body, &mut at)?;
                let value = cstr(body, &mut at)?;
                return Ok(Step::Param(name, value));
            }
            b'Z' => {
                if body.len() != 1 {
                    return Err(ReplyError("ReadyForQuery of the wrong length".into()));
                }
                return Ok(Step::Done(match self.error.take() {
                    Some(e) => Err(e),
                    None => Ok(std::mem::take(&mut self.rows)),
                }));
            }
            t => {
                return Err(ReplyError(format!(
                    "unexpected `{}` in an extended query reply",
                    t.escape_ascii()
                )))
            }
        }
        Ok(Step::More)
    }
}

/// A NUL-terminated string at `*at`, which moves past it.
fn cstr(body: &[u8], at: &mut usize) -> Result<String, ReplyError> {
    let rest = body.get(*at..).unwrap_or(&[]);
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| ReplyError("string without its NUL".into()))?;
    *at += end + 1;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

fn take<const N: usize>(body: &[u8], at: &mut usize) -> Result<[u8; N], ReplyError> {
    let bytes = body
        .get(*at..*at + N)
        .ok_or_else(|| ReplyError("message cut short".into()))?;
    *at += N;
    Ok(bytes.try_into().expect("N bytes"))
}

/// Column names of a RowDescription.
fn parse_row_description(body: &[u8]) -> Result<Vec<String>, ReplyError> {
    let mut at = 0;
    let n = u16::from_be_bytes(take(body, &mut at)?) as usize;
    // Each field is at least 19 bytes: no allocation beyond the message.
    let mut names = Vec::with_capacity(n.min(body.len() / 19));
    for _ in 0..n {
        names.push(cstr(body, &mut at)?);
        // Table OID, column number, type OID, size, modifier, format.
        take::<18>(body, &mut at)?;
    }
    if at != body.len() {
        return Err(ReplyError("RowDescription with trailing bytes".into()));
    }
    Ok(names)
}

/// Values of a DataRow, as text; `None` is NULL.
fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ReplyError> {
    let mut at = 0;
    let n = u16::from_be_bytes(take(body, &mut at)?) as usize;
    let mut row = Vec::with_capacity(n.min(body.len() / 4));
    for _ in 0..n {
        let len = i32::from_be_bytes(take(body, &mut at)?);
        if len < 0 {
            row.push(None);
            continue;
        }
        let v = body
            .get(at..at.saturating_add(len as usize))
            .ok_or_else(|| ReplyError("DataRow value cut short".into()))?;
        at += len as usize;
        row.push(Some(String::from_utf8_lossy(v).into_owned()));
    }
    if at != body.len() {
        return Err(ReplyError("DataRow with trailing bytes".into()));
    }
    Ok(row)
}

#[cfg(test)]
#[path = "extended_tests.rs"]
mod tests;
