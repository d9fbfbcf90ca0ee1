//! The `filter` grammar of a `postgres_changes` binding (PROTOCOL 6.2):
//! a comma-separated AND list of `column=[not.]op.value`.
//!
//! Parsing follows the Elixir server's `parse_subscription_params` byte for
//! byte, including what it lets through: the column is not checked against
//! the table, an `is` value is not checked against its keywords, and an `in`
//! list is only checked for its parentheses. Those checks happen in the
//! tenant database's `realtime.subscription_check_filters()` trigger when the
//! subscription row is inserted; [`Filter::static_check`] and [`trigger`]
//! give the parts of them that need no catalog, with the exact texts.
//!
//! Evaluation of a parsed filter against a row lives in
//! [`eval`](super::eval).

use std::fmt;

use super::inspect::{inspect, Term};

/// A filter operator, with the SQL `realtime.check_equality_op` runs for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `eq`: `=`.
    Eq,
    /// `neq`: `!=`.
    Neq,
    /// `lt`: `<`.
    Lt,
    /// `lte`: `<=`.
    Lte,
    /// `gt`: `>`.
    Gt,
    /// `gte`: `>=`.
    Gte,
    /// `in`: `= ANY (array)`.
    In,
    /// `like`: `LIKE`.
    Like,
    /// `ilike`: `ILIKE`.
    Ilike,
    /// `match`: `~`.
    Match,
    /// `imatch`: `~*`.
    Imatch,
    /// `is`: `IS NULL | TRUE | FALSE | UNKNOWN` (`not.` gives `IS NOT ...`).
    Is,
    /// `isdistinct`: `IS DISTINCT FROM` (`not.` gives `IS NOT DISTINCT FROM`).
    IsDistinct,
}

impl Op {
    /// Every operator, in the order the Elixir server lists them.
    pub const ALL: [Op; 13] = [
        Op::Eq,
        Op::Neq,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::In,
        Op::Like,
        Op::Ilike,
        Op::Is,
        Op::Match,
        Op::Imatch,
        Op::IsDistinct,
    ];

    /// The operator named `s` (exact, lower-case).
    pub fn from_name(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// The wire name (`eq`, `isdistinct`, ...), also its
    /// `realtime.equality_op` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::In => "in",
            Op::Like => "like",
            Op::Ilike => "ilike",
            Op::Match => "match",
            Op::Imatch => "imatch",
            Op::Is => "is",
            Op::IsDistinct => "isdistinct",
        }
    }

    /// The SQL operator between the two casts, for the binary operators
    /// (`None` for `is` and `isdistinct`, which are spelled around `NOT`).
    pub fn sql_operator(self) -> Option<&'static str> {
        Some(match self {
            Op::Eq => "=",
            Op::Neq => "!=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::In => "= ANY",
            Op::Like => "LIKE",
            Op::Ilike => "ILIKE",
            Op::Match => "~",
            Op::Imatch => "~*",
            Op::Is | Op::IsDistinct => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter's right-hand side, as the Elixir server stores it in
/// `realtime.subscription.filters`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FilterValue {
    /// Every operator but `in`: the text after the operator, unquoted when
    /// it was a complete double-quoted string (`"a,b"` -> `a,b`).
    Scalar(String),
    /// `in`: the Postgres array literal `{a,b}` made from `(a,b)`.
    List(String),
}

impl FilterValue {
    /// The stored text (what the database casts to the column type, or to
    /// its array type for `in`).
    pub fn as_str(&self) -> &str {
        match self {
            FilterValue::Scalar(s) | FilterValue::List(s) => s,
        }
    }

    /// The elements of an `in` list as `array_in` reads a one-dimensional
    /// literal (`None` element = SQL NULL), or `None` when this is not a
    /// list or the literal is anything else (nested, decorated, malformed):
    /// then only the database can read it.
    pub fn elements(&self) -> Option<Vec<Option<String>>> {
        match self {
            FilterValue::List(s) => parse_array_literal(s),
            FilterValue::Scalar(_) => None,
        }
    }
}

/// One condition of a filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Column name as written (not trimmed, not checked).
    pub column: String,
    /// The operator.
    pub op: Op,
    /// `not.` prefix: negates the comparison (`IS NOT` / `IS NOT DISTINCT
    /// FROM` for `is` / `isdistinct`).
    pub negate: bool,
    /// The right-hand side.
    pub value: FilterValue,
}

impl Filter {
    /// The stored tuple `{column, op, value, negate}` as an Elixir term (for
    /// the parameter list of "Unable to subscribe" messages).
    pub(crate) fn to_term(&self) -> Term {
        Term::Tuple(vec![
            Term::str(&self.column),
            Term::str(self.op.as_str()),
            Term::str(self.value.as_str()),
            Term::Bool(self.negate),
        ])
    }

    /// The checks of `realtime.subscription_check_filters()` that need only
    /// the column's type, once the column exists and the value casts:
    /// `in` lists over 100 elements, `is` values other than the four
    /// keywords, and `is true|false|unknown` on a non-boolean column.
    /// `column_type` is `format_type`/`regtype` text (`integer`,
    /// `boolean`, ...). An `in` literal this module cannot read passes
    /// (the database counts it). The error is the raised message text.
    pub fn static_check(&self, column_type: &str) -> Result<(), String> {
        match self.op {
            Op::In => match self.value.elements() {
                Some(items) if items.len() > trigger::MAX_IN_VALUES => {
                    Err(trigger::TOO_MANY_IN_VALUES.to_owned())
                }
                _ => Ok(()),
            },
            Op::Is => {
                let v = self.value.as_str();
                if !IS_KEYWORDS.contains(&v) {
                    Err(trigger::INVALID_IS_VALUE.to_owned())
                } else if v != "null" && column_type != "boolean" {
                    Err(trigger::is_requires_boolean(v, column_type))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// The only values `is` accepts (exact, lower-case).
pub const IS_KEYWORDS: [&str; 4] = ["null", "true", "false", "unknown"];

/// Texts raised by the tenant database's subscription checks; they reach
/// the client inside ``Unable to subscribe to changes with given
/// parameters. An exception happened ...`` (see
/// [`Binding::exception_message`](super::Binding::exception_message)) as
/// `ERROR P0001 (raise_exception) <text>`.
pub mod trigger {
    /// Most elements an `in` list may have.
    pub const MAX_IN_VALUES: usize = 100;
    /// An `in` list longer than [`MAX_IN_VALUES`].
    pub const TOO_MANY_IN_VALUES: &str = "too many values for `in` filter. Maximum 100";
    /// An `is` value other than `null`, `true`, `false`, `unknown`.
    pub const INVALID_IS_VALUE: &str =
        "invalid value for is filter: must be null, true, false, or unknown";

    /// A filter on a column that does not exist or the role cannot select.
    pub fn invalid_column(column: &str) -> String {
        format!("invalid column for filter {column}")
    }

    /// A `select` entry that does not exist or the role cannot select.
    pub fn invalid_select(column: &str) -> String {
        format!("invalid column for select {column}")
    }

    /// `is true|false|unknown` on a column that is not `boolean`.
    pub fn is_requires_boolean(value: &str, column_type: &str) -> String {
        format!("is {value} filter requires a boolean column, got {column_type}")
    }

    /// `like`/`ilike`/`match`/`imatch` on a type without the operator.
    pub fn operator_requires_text(op: &str, column_type: &str) -> String {
        format!("operator {op} requires a text-compatible column type, got {column_type}")
    }

    /// A `match`/`imatch` pattern Postgres rejects (`sqlerrm` is its error).
    pub fn invalid_regex(op: &str, sqlerrm: &str) -> String {
        format!("invalid regular expression for {op} filter: {sqlerrm}")
    }
}

/// Why a filter string was rejected. [`message`](Self::message) is the
/// exact `postgres_changes` system error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A segment between commas is blank (`a=eq.1,,b=eq.2`, trailing comma).
    #[error("filter must not contain empty segments (check for extra commas)")]
    EmptySegment,
    /// `in` whose value is not `(...)`.
    #[error("`in` filter value must be wrapped by parentheses")]
    InNotParenthesized,
    /// A segment that is not `column=[not.]op.value` with a known op; holds
    /// the pieces the Elixir server got that far (`["foo", "hey"]`).
    #[error("{}", inspect(&Term::List(.0.iter().map(|p| Term::str(p)).collect())))]
    Malformed(Vec<String>),
}

impl FilterError {
    /// The full error text: ``Error parsing `filter` params: <reason>``.
    pub fn message(&self) -> String {
        format!("Error parsing `filter` params: {self}")
    }
}

/// Parses a filter string. Empty or blank means no filter. Errors stop at
/// the first bad segment, as the Elixir server does.
pub fn parse_filters(s: &str) -> Result<Vec<Filter>, FilterError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    split_top_level(trimmed.as_bytes())
        .iter()
        .map(|seg| parse_segment(&bytes_to_string(seg)))
        .collect()
}

fn parse_segment(segment: &str) -> Result<Filter, FilterError> {
    let trimmed = segment.trim();
    if trimmed.is_empty() {
        return Err(FilterError::EmptySegment);
    }
    let Some((column, rest)) = trimmed.split_once('=') else {
        return Err(FilterError::Malformed(vec![trimmed.to_owned()]));
    };
    let (negate, op_value) = match rest.strip_prefix("not.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let Some((op_name, value)) = op_value.split_once('.') else {
        return Err(FilterError::Malformed(vec![op_value.to_owned()]));
    };
    let Some(op) = Op::from_name(op_name) else {
        return Err(FilterError::Malformed(vec![
            op_name.to_owned(),
            value.to_owned(),
        ]));
    };
    let value = if op == Op::In {
        let b = value.as_bytes();
        if b.len() >= 2 && b[0] == b'(' && b[b.len() - 1] == b')' {
            FilterValue::List(format!("{{{}}}", &value[1..value.len() - 1]))
        } else {
            return Err(FilterError::InNotParenthesized);
        }
    } else {
        FilterValue::Scalar(unquote(value))
    };
    Ok(Filter {
        column: column.to_owned(),
        op,
        negate,
        value,
    })
}

/// Splits at commas outside parentheses and outside double quotes. A quote
/// opens only right after `.`, `(` or `,`; inside quotes a backslash keeps
/// the next byte.
fn split_top_level(s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let (mut depth, mut quoted, mut prev) = (0usize, false, 0u8);
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if quoted {
            match c {
                b'\\' if i < s.len() => {
                    current.extend_from_slice(&[c, s[i]]);
                    prev = s[i];
                    i += 1;
                }
                b'"' => {
                    quoted = false;
                    current.push(c);
                    prev = c;
                }
                _ => {
                    current.push(c);
                    prev = c;
                }
            }
            continue;
        }
        match c {
            b'"' if matches!(prev, b'.' | b'(' | b',') => quoted = true,
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                out.push(std::mem::take(&mut current));
                prev = 0;
                continue;
            }
            _ => {}
        }
        current.push(c);
        prev = c;
    }
    out.push(current);
    out
}

/// A value that is one complete double-quoted string loses its quotes and
/// backslashes (`"a\"b"` -> `a"b`); anything else is kept as is.
fn unquote(value: &str) -> String {
    let Some(inner) = value.as_bytes().strip_prefix(b"\"") else {
        return value.to_owned();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            b'"' if i + 1 == inner.len() => return bytes_to_string(&out),
            b'"' => return value.to_owned(),
            b'\\' if i + 1 < inner.len() => {
                out.push(inner[i + 1]);
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    value.to_owned()
}

fn bytes_to_string(b: &[u8]) -> String {
    String::from_utf8(b.to_vec())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `array_isspace`: the whitespace `array_in` skips.
fn array_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Reads a one-dimensional array literal the way `array_in` does with the
/// `,` delimiter: whitespace around elements skipped, `"..."` and `\`
/// escapes, unquoted `NULL` (any case) as SQL NULL. `None` for anything
/// else (dimension decorations, nesting, empty elements, stray quotes).
pub(crate) fn parse_array_literal(s: &str) -> Option<Vec<Option<String>>> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && array_space(b[i]) {
        i += 1;
    }
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut items = Vec::new();
    loop {
        while i < b.len() && array_space(b[i]) {
            i += 1;
        }
        if b.get(i) == Some(&b'}') && items.is_empty() {
            i += 1;
            break;
        }
        // One element.
        let mut elem = Vec::new();
        let (mut quoted_any, mut escaped_any) = (false, false);
        let mut trailing_ws = 0usize; // unescaped spaces at the end of `elem`
        loop {
            let c = *b.get(i)?;
            match c {
                b'"' if elem.is_empty() && !quoted_any => {
                    quoted_any = true;
                    i += 1;
                    loop {
                        match *b.get(i)? {
                            b'"' => break,
                            b'\\' => {
                                elem.push(*b.get(i + 1)?);
                                i += 2;
                            }
                            c => {
                                elem.push(c);
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                    // Only whitespace may follow a quoted element.
                    while i < b.len() && array_space(b[i]) {
                        i += 1;
                    }
                    if !matches!(b.get(i), Some(b',' | b'}')) {
                        return None;
                    }
                }
                b',' | b'}' => break,
                b'"' | b'{' => return None,
                b'\\' => {
                    if quoted_any {
                        return None;
                    }
                    elem.push(*b.get(i + 1)?);
                    escaped_any = true;
                    trailing_ws = 0;
                    i += 2;
                }
                c => {
                    if quoted_any {
                        return None;
                    }
                    elem.push(c);
                    trailing_ws = if array_space(c) { trailing_ws + 1 } else { 0 };
                    i += 1;
                }
            }
        }
        elem.truncate(elem.len() - trailing_ws);
        if elem.is_empty() && !quoted_any {
            return None;
        }
        let is_null = !quoted_any && !escaped_any && elem.eq_ignore_ascii_case(b"null");
        items.push(if is_null {
            None
        } else {
            Some(String::from_utf8(elem).ok()?)
        });
        let c = b[i];
        i += 1;
        if c == b'}' {
            break;
        }
    }
    while i < b.len() && array_space(b[i]) {
        i += 1;
    }
    (i == b.len()).then_some(items)
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
