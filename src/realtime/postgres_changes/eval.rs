//! Evaluating a filter against one column value, in Rust where that gives
//! exactly PostgreSQL's answer and [`Tri::NeedsDatabase`] everywhere else.
//!
//! The Elixir server evaluates `realtime.check_equality_op(op, type, val_1,
//! val_2, negate)` per row: `val_1::type <op> (val_2::type)` (`= ANY
//! (val_2::type[])` for `in`, `IS [NOT] <KW>` for `is`, `IS [NOT] DISTINCT
//! FROM` for `isdistinct`), negated with `NOT` unless the operator spells
//! its own negation, and a row passes only when the result is TRUE (SQL
//! NULL fails, negated or not). Both sides are literals cast to the column's
//! type (`atttypid`, no typmod), so the column's collation plays no part;
//! the type's default collation does.
//!
//! Rust answers only these cases, each exact for the stated reason:
//! - **SQL NULL column values**, any type: every comparison operator
//!   (`eq` ... `imatch`) yields NULL, so the row fails whatever `not.` says;
//!   `is null` is true, `is true|false` false, `is unknown` true;
//!   `isdistinct` is true (the filter value is never NULL); `in` is NULL
//!   (fails) unless the list is empty (`= ANY('{}')` is false).
//! - **`int2 int4 int8`**: values are integers; `=`/`<` are integer
//!   comparisons. Filter values are read only in the grammar every
//!   PostgreSQL version accepts the same way (blanks, optional sign,
//!   decimal digits); `0x..`, `1_000` and out-of-range values go to the
//!   database.
//! - **`numeric`**: compared as exact decimals (no rounding: `numeric`
//!   equality and order are those of the decimal value, scale ignored),
//!   with `NaN` equal to itself and above everything, `-Infinity` <
//!   finite < `Infinity` (`cmp_numerics`). Filter values must be plain
//!   decimals (`[+-]digits[.digits][e[+-]digits]`).
//! - **`float4 float8`**: the text is read with correctly rounded parsing,
//!   as `float4in`/`float8in` (`strtof`/`strtod`) do, and compared as
//!   `float8_cmp_internal` does: `-0 = 0`, `NaN` equal to itself and above
//!   everything. Plain decimal filter values only; overflow and underflow
//!   to zero (errors in PostgreSQL) go to the database.
//! - **`bool`**: `t`/`f`, filter values `t`/`true`/`f`/`false` in any case;
//!   `false < true`.
//! - **`text varchar`**: equality (`eq neq in isdistinct`) is byte equality
//!   under any deterministic collation, and a database's default collation
//!   is always deterministic. Order uses the collation: database.
//! - **`uuid`**: both sides read as `uuid_in` reads them (hex pairs,
//!   optional `-` after each group of four, optional braces) and compared
//!   as 16 bytes (`uuid_cmp` is `memcmp`), for equality and order.
//!
//! Everything else needs the database: `like ilike match imatch` on
//! non-NULL values, text order, timestamps, dates, intervals, network
//! types, JSON, arrays, enums, domains, composites, any non-builtin OID,
//! binary-format values, unreadable filter values, and `in` lists this
//! module cannot read. For those, run [`Filter::sql`].
//!
//! `bpchar` is left to the database on purpose: `regtype` prints it as
//! `character`, which as a cast target means `character(1)`, so
//! `check_equality_op` compares only the first character of both sides.
//! Whether to reproduce that (type text `character`) or compare whole
//! values (`bpchar`) is the caller's choice of `type_sql`.

use std::cmp::Ordering;

use super::filter::{Filter, Op, IS_KEYWORDS};
use crate::proto::pg::types::builtin;
use crate::proto::pg::Oid;

/// A filter's verdict on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tri {
    /// The row passes (PostgreSQL would say TRUE).
    True,
    /// The row does not pass (FALSE or NULL).
    False,
    /// Only the database can tell: run [`Filter::sql`].
    NeedsDatabase,
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }

    /// AND of two verdicts: FALSE wins, then NeedsDatabase.
    pub fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::False, _) | (_, Tri::False) => Tri::False,
            (Tri::NeedsDatabase, _) | (_, Tri::NeedsDatabase) => Tri::NeedsDatabase,
            _ => Tri::True,
        }
    }
}

/// One column value of a row image, as a filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnValue<'a> {
    /// SQL NULL.
    Null,
    /// The type's text output (pgoutput `t`), with the column's `atttypid`.
    Text(Oid, &'a [u8]),
    /// A non-NULL value in a form not read here (pgoutput `b`).
    Opaque,
}

impl Filter {
    /// Evaluates this filter on a column value. `None` means the column is
    /// not in the row image the Elixir server checks (an unchanged TOAST
    /// value, or a non-identity column of a DELETE), which fails the filter.
    pub fn eval(&self, value: Option<&ColumnValue<'_>>) -> Tri {
        let Some(value) = value else {
            return Tri::False;
        };
        match self.op {
            Op::Is => self.eval_is(value),
            Op::IsDistinct => self.eval_distinct(value),
            Op::In => self.eval_in(value),
            _ => self.eval_binary(value),
        }
    }

    /// The SQL the database evaluates for this filter, as
    /// `realtime.check_equality_op` builds it: `$1` is the column's text
    /// (NULL for SQL NULL) and `$2` the filter's stored value
    /// ([`FilterValue::as_str`](super::FilterValue::as_str)), both bound as
    /// text with unspecified parameter types so each goes through the
    /// type's input function like a literal; `type_sql` is the column type
    /// as `atttypid::regtype::text` prints it (trusted text: it is spliced
    /// in). `is` takes no `$2`. The row passes only when the result is
    /// TRUE.
    pub fn sql(&self, type_sql: &str) -> String {
        let t = type_sql;
        match self.op {
            // Only the four keywords are spliced in; anything else (which
            // the subscription checks reject) never passes.
            Op::Is if !IS_KEYWORDS.contains(&self.value.as_str()) => "NULL::boolean".to_owned(),
            Op::Is => format!(
                "$1::{t} {} {}",
                if self.negate { "IS NOT" } else { "IS" },
                self.value.as_str().to_uppercase()
            ),
            Op::IsDistinct => format!(
                "$1::{t} {} $2::{t}",
                if self.negate {
                    "IS NOT DISTINCT FROM"
                } else {
                    "IS DISTINCT FROM"
                }
            ),
            op => {
                let rhs = if op == Op::In {
                    format!("$2::{t}[]")
                } else {
                    format!("$2::{t}")
                };
                let cmp = format!("$1::{t} {} ({rhs})", op.sql_operator().unwrap_or("="));
                if self.negate {
                    format!("NOT ({cmp})")
                } else {
                    cmp
                }
            }
        }
    }

    fn eval_binary(&self, value: &ColumnValue<'_>) -> Tri {
        let (oid, text) = match *value {
            ColumnValue::Null => return Tri::False,
            ColumnValue::Opaque => return Tri::NeedsDatabase,
            ColumnValue::Text(oid, text) => (oid, text),
        };
        let Some((a, b)) = parse_pair(oid, text, self.value.as_str()) else {
            return Tri::NeedsDatabase;
        };
        let r = match self.op {
            Op::Eq => a.equal(&b),
            Op::Neq => !a.equal(&b),
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
                let Some(o) = a.order(&b) else {
                    return Tri::NeedsDatabase;
                };
                match self.op {
                    Op::Lt => o == Ordering::Less,
                    Op::Lte => o != Ordering::Greater,
                    Op::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }
            }
            _ => return Tri::NeedsDatabase,
        };
        Tri::from_bool(r != self.negate)
    }

    fn eval_in(&self, value: &ColumnValue<'_>) -> Tri {
        let Some(items) = self.value.elements() else {
            return Tri::NeedsDatabase;
        };
        // SQL three-valued `x = ANY(items)`: None is NULL.
        let r = if items.is_empty() {
            Some(false)
        } else {
            match *value {
                ColumnValue::Null => None,
                ColumnValue::Opaque => return Tri::NeedsDatabase,
                ColumnValue::Text(oid, text) => {
                    let Some(class) = Class::of(oid) else {
                        return Tri::NeedsDatabase;
                    };
                    let Some(x) = class.parse(text, true) else {
                        return Tri::NeedsDatabase;
                    };
                    let (mut found, mut saw_null) = (false, false);
                    for item in &items {
                        match item {
                            None => saw_null = true,
                            Some(s) => match class.parse(s.as_bytes(), false) {
                                Some(v) => found |= x.equal(&v),
                                None => return Tri::NeedsDatabase,
                            },
                        }
                    }
                    if found {
                        Some(true)
                    } else if saw_null {
                        None
                    } else {
                        Some(false)
                    }
                }
            }
        };
        match r {
            Some(b) => Tri::from_bool(b != self.negate),
            None => Tri::False,
        }
    }

    fn eval_is(&self, value: &ColumnValue<'_>) -> Tri {
        let kw = self.value.as_str();
        if !IS_KEYWORDS.contains(&kw) {
            // check_equality_op raises; the subscription checks keep such
            // filters out in the first place.
            return Tri::False;
        }
        let r = match (kw, *value) {
            (_, ColumnValue::Opaque) => return Tri::NeedsDatabase,
            ("null" | "unknown", ColumnValue::Null) => true,
            (_, ColumnValue::Null) => false,
            // A composite is NULL when all its fields are: only builtin
            // (never composite) types are decided here.
            ("null", ColumnValue::Text(oid, _)) if builtin(oid).is_some() => false,
            (_, ColumnValue::Text(Oid(16), t)) if kw != "null" => match (kw, t) {
                ("true", b"t") | ("false", b"f") => true,
                ("true" | "false", b"t" | b"f") | ("unknown", _) => false,
                _ => return Tri::NeedsDatabase,
            },
            _ => return Tri::NeedsDatabase,
        };
        Tri::from_bool(r != self.negate)
    }

    fn eval_distinct(&self, value: &ColumnValue<'_>) -> Tri {
        let distinct = match *value {
            ColumnValue::Null => true,
            ColumnValue::Opaque => return Tri::NeedsDatabase,
            ColumnValue::Text(oid, text) => match parse_pair(oid, text, self.value.as_str()) {
                Some((a, b)) => !a.equal(&b),
                None => return Tri::NeedsDatabase,
            },
        };
        Tri::from_bool(distinct != self.negate)
    }
}

fn parse_pair<'a>(oid: Oid, column: &'a [u8], filter: &'a str) -> Option<(Val<'a>, Val<'a>)> {
    let class = Class::of(oid)?;
    Some((
        class.parse(column, true)?,
        class.parse(filter.as_bytes(), false)?,
    ))
}

/// The types evaluated here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// An integer type and its range.
    Int(i128, i128),
    Numeric,
    Float4,
    Float8,
    Bool,
    Text,
    Uuid,
}

/// A parsed value of a [`Class`].
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Int(i128),
    Num(Decimal),
    Float(f64),
    Bool(bool),
    /// Text, compared by bytes.
    Bytes(&'a [u8]),
    /// A uuid's 16 bytes.
    Uuid([u8; 16]),
}

impl Class {
    fn of(oid: Oid) -> Option<Class> {
        Some(match oid.0 {
            21 => Class::Int(i128::from(i16::MIN), i128::from(i16::MAX)),
            23 => Class::Int(i128::from(i32::MIN), i128::from(i32::MAX)),
            20 => Class::Int(i128::from(i64::MIN), i128::from(i64::MAX)),
            1700 => Class::Numeric,
            700 => Class::Float4,
            701 => Class::Float8,
            16 => Class::Bool,
            25 | 1043 => Class::Text,
            2950 => Class::Uuid,
            _ => return None,
        })
    }

    /// Reads `s`; `column` allows the special spellings the type's output
    /// function prints (`NaN`, `Infinity`) which filter values must not use.
    fn parse(self, s: &[u8], column: bool) -> Option<Val<'_>> {
        match self {
            Class::Int(min, max) => parse_int(s)
                .filter(|i| (min..=max).contains(i))
                .map(Val::Int),
            Class::Numeric => Decimal::parse(s, column).map(Val::Num),
            Class::Float4 | Class::Float8 => parse_float(s, column, self == Class::Float4),
            Class::Bool => match trim_space(s).to_ascii_lowercase().as_slice() {
                b"t" | b"true" => Some(Val::Bool(true)),
                b"f" | b"false" => Some(Val::Bool(false)),
                _ => None,
            },
            Class::Text => std::str::from_utf8(s).ok().map(|_| Val::Bytes(s)),
            Class::Uuid => parse_uuid(s).map(Val::Uuid),
        }
    }
}

impl Val<'_> {
    fn order(&self, other: &Val<'_>) -> Option<Ordering> {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => Some(a.cmp(b)),
            (Val::Num(a), Val::Num(b)) => Some(a.cmp(b)),
            (Val::Float(a), Val::Float(b)) => Some(float_cmp(*a, *b)),
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            (Val::Uuid(a), Val::Uuid(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    fn equal(&self, other: &Val<'_>) -> bool {
        match (self, other) {
            (Val::Bytes(a), Val::Bytes(b)) => a == b,
            _ => self.order(other) == Some(Ordering::Equal),
        }
    }
}

/// `float8_cmp_internal`: NaN equals NaN and sorts above everything.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// C `isspace` in the C locale: what the numeric input functions skip.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn trim_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&c| !is_space(c)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&c| !is_space(c))
        .map_or(start, |p| p + 1);
    &s[start..end]
}

/// `[blanks][+-]digits[blanks]`, the integer grammar every version reads
/// alike (at most 30 digits; the range check is the caller's).
fn parse_int(s: &[u8]) -> Option<i128> {
    let t = trim_space(s);
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || digits.len() > 30 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i128, |v, d| v * 10 + i128::from(d - b'0'));
    Some(if neg { -v } else { v })
}

fn parse_float(s: &[u8], column: bool, single: bool) -> Option<Val<'static>> {
    let t = trim_space(s);
    if column {
        match t {
            b"NaN" => return Some(Val::Float(f64::NAN)),
            b"Infinity" => return Some(Val::Float(f64::INFINITY)),
            b"-Infinity" => return Some(Val::Float(f64::NEG_INFINITY)),
            _ => {}
        }
    }
    // The plain decimal grammar only (no hex, no inf/nan spellings).
    let d = Decimal::parse(t, false)?;
    let text = std::str::from_utf8(t).ok()?;
    let v = if single {
        f64::from(text.parse::<f32>().ok()?)
    } else {
        text.parse::<f64>().ok()?
    };
    let nonzero = !matches!(d, Decimal::Zero);
    if v.is_infinite() || (v == 0.0 && nonzero) {
        return None; // out of range for the type: PostgreSQL raises
    }
    Some(Val::Float(v))
}

/// `string_to_uuid`: 32 hex digits, a `-` allowed after any group of four
/// (but not at the end), optionally in braces; nothing else.
fn parse_uuid(s: &[u8]) -> Option<[u8; 16]> {
    let braces = s.first() == Some(&b'{');
    let mut i = usize::from(braces);
    let mut out = [0u8; 16];
    let hex = |c: u8| char::from(c).to_digit(16);
    for (k, byte) in out.iter_mut().enumerate() {
        let hi = hex(*s.get(i)?)?;
        let lo = hex(*s.get(i + 1)?)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
        i += 2;
        if s.get(i) == Some(&b'-') && k % 2 == 1 && k < 15 {
            i += 1;
        }
    }
    if braces {
        if s.get(i) != Some(&b'}') {
            return None;
        }
        i += 1;
    }
    (i == s.len()).then_some(out)
}

/// An exact decimal (or a `numeric` special value), ordered as `numeric`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decimal {
    NegInf,
    /// `0.d1d2...dn * 10^exp`, negative when `neg`; `digits` has no
    /// leading or trailing zeros and is not empty.
    Finite {
        neg: bool,
        digits: Vec<u8>,
        exp: i64,
    },
    Zero,
    PosInf,
    NaN,
}

/// Largest decimal exponent read (`numeric` itself stops far below).
const MAX_EXP: i64 = 1_000_000;

impl Decimal {
    /// Reads `[blanks][+-]digits[.digits][e[+-]digits][blanks]` (at least
    /// one digit); with `special`, also `NaN`, `Infinity`, `-Infinity`.
    fn parse(s: &[u8], special: bool) -> Option<Decimal> {
        let t = trim_space(s);
        if special {
            match t {
                b"NaN" => return Some(Decimal::NaN),
                b"Infinity" => return Some(Decimal::PosInf),
                b"-Infinity" => return Some(Decimal::NegInf),
                _ => {}
            }
        }
        let (neg, t) = match t.first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let int_len = t.iter().take_while(|c| c.is_ascii_digit()).count();
        let (int, rest) = t.split_at(int_len);
        let (frac, rest) = match rest.strip_prefix(b".") {
            Some(r) => {
                let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
                r.split_at(n)
            }
            None => (&[][..], rest),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let exp = match rest {
            [] => 0,
            [b'e' | b'E', e @ ..] => {
                let (eneg, e) = match e.first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                if e.is_empty() || !e.iter().all(u8::is_ascii_digit) || e.len() > 7 {
                    return None;
                }
                let v: i64 = std::str::from_utf8(e).ok()?.parse().ok()?;
                if v > MAX_EXP {
                    return None;
                }
                if eneg {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        let mut digits: Vec<u8> = int.iter().chain(frac).map(|c| c - b'0').collect();
        let mut point = i64::try_from(int.len()).ok()? + exp;
        let lead = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..lead);
        point -= i64::try_from(lead).ok()?;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal::Zero);
        }
        Some(Decimal::Finite {
            neg,
            digits,
            exp: point,
        })
    }

    fn rank(&self) -> u8 {
        match self {
            Decimal::NegInf => 0,
            Decimal::Finite { neg: true, .. } => 1,
            Decimal::Zero => 2,
            Decimal::Finite { neg: false, .. } => 3,
            Decimal::PosInf => 4,
            Decimal::NaN => 5,
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self, other) {
            (
                Decimal::Finite {
                    neg,
                    digits: a,
                    exp: ea,
                },
                Decimal::Finite {
                    neg: nb,
                    digits: b,
                    exp: eb,
                },
            ) if neg == nb => {
                let magnitude = ea.cmp(eb).then_with(|| a.cmp(b));
                if *neg {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
