//! Elixir's `inspect/2`, for the few terms whose inspected text ends up in
//! client-visible error messages (binding maps, filter parts, subscription
//! parameters).
//!
//! Reproduces Elixir 1.19 (`Inspect.Algebra`, `Inspect.{BitString, List,
//! Tuple, Map, Float}`) with the default options: `limit: 50` counted across
//! nested containers, `printable_limit: 4096`, and either no width
//! (`inspect(term)`) or width 80 (`inspect(term, pretty: true)`). A JSON value
//! maps onto the term Jason would decode it to.

use std::rc::Rc;

use serde_json::Value;

/// Default `:limit`: container elements shown before `...`.
const LIMIT: i64 = 50;
/// Default `:printable_limit`: characters of a string shown before `<> ...`.
const PRINTABLE_LIMIT: usize = 4096;
/// `:width` used by `pretty: true`.
const PRETTY_WIDTH: usize = 80;

/// The Elixir terms the messages need.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Term {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A binary (a string when printable).
    Bin(Vec<u8>),
    /// A proper list.
    List(Vec<Term>),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A map, entries in the order `Map.to_list/1` gives them.
    Map(Vec<(Term, Term)>),
}

impl Term {
    /// A binary from a string.
    pub(crate) fn str(s: &str) -> Term {
        Term::Bin(s.as_bytes().to_vec())
    }

    /// The term Jason decodes `v` to. Object keys come out sorted by bytes,
    /// the order a small map (up to 32 keys) of binaries iterates in.
    pub(crate) fn from_json(v: &Value) -> Term {
        match v {
            Value::Null => Term::Nil,
            Value::Bool(b) => Term::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Term::Int(i128::from(i)),
                (None, Some(u)) => Term::Int(i128::from(u)),
                _ => Term::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Term::str(s),
            Value::Array(a) => Term::List(a.iter().map(Term::from_json).collect()),
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Term::Map(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Term::str(k), Term::from_json(v)))
                        .collect(),
                )
            }
        }
    }
}

/// `inspect(term)`: one line, never broken.
pub(crate) fn inspect(term: &Term) -> String {
    render(term, None)
}

/// `inspect(term, pretty: true)`: broken to fit 80 columns.
pub(crate) fn inspect_pretty(term: &Term) -> String {
    render(term, Some(PRETTY_WIDTH))
}

fn render(term: &Term, width: Option<usize>) -> String {
    let mut limit = LIMIT;
    let doc = group(to_doc(term, &mut limit));
    let mut out = String::new();
    format(width, doc, &mut out);
    out
}

/// An `Inspect.Algebra` document (the subset containers produce).
#[derive(Debug)]
enum Doc {
    /// Text.
    Str(String),
    /// Two documents in a row.
    Cons(Rc<Doc>, Rc<Doc>),
    /// Indent breaks inside by this many more columns.
    Nest(Rc<Doc>, usize),
    /// A break: the string when flat, a newline otherwise.
    Break(&'static str, BreakKind),
    /// Flat if it fits, else broken.
    Group(Rc<Doc>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakKind {
    /// Breaks whenever its group breaks.
    Strict,
    /// Breaks only when the text up to the next break does not fit.
    Flex,
}

type D = Rc<Doc>;

fn text(s: impl Into<String>) -> D {
    Rc::new(Doc::Str(s.into()))
}

fn cons(a: D, b: D) -> D {
    Rc::new(Doc::Cons(a, b))
}

fn nest(d: D, j: usize) -> D {
    Rc::new(Doc::Nest(d, j))
}

fn group(d: D) -> D {
    Rc::new(Doc::Group(d))
}

fn brk(s: &'static str, kind: BreakKind) -> D {
    Rc::new(Doc::Break(s, kind))
}

/// The document of `term`, spending the shared element budget as Elixir's
/// `container_doc_with_opts` does.
fn to_doc(term: &Term, limit: &mut i64) -> D {
    match term {
        Term::Nil => text("nil"),
        Term::Bool(b) => text(if *b { "true" } else { "false" }),
        Term::Int(i) => text(i.to_string()),
        Term::Float(f) => text(float(*f)),
        Term::Bin(b) => binary(b, limit),
        Term::List(items) if items.is_empty() => text("[]"),
        Term::List(items) => match charlist(items) {
            Some(s) => text(s),
            None => container("[", items, "]", limit, Break::Maybe, to_doc),
        },
        Term::Tuple(items) => container("{", items, "}", limit, Break::Flex, to_doc),
        Term::Map(entries) => container("%{", entries, "}", limit, Break::Strict, |(k, v), l| {
            let k = to_doc(k, l);
            let v = to_doc(v, l);
            cons(cons(k, text(" => ")), v)
        }),
    }
}

/// A container's `:break` option.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    Strict,
    Flex,
    Maybe,
}

fn container<T>(
    left: &str,
    items: &[T],
    right: &str,
    limit: &mut i64,
    mode: Break,
    mut each: impl FnMut(&T, &mut i64) -> D,
) -> D {
    if items.is_empty() {
        return text(format!("{left}{right}"));
    }
    let mut docs = Vec::with_capacity(items.len());
    let mut simple = mode == Break::Maybe;
    for item in items {
        if *limit <= 0 {
            docs.push(text("..."));
            break;
        }
        *limit -= 1;
        let d = each(item, limit);
        simple = simple && matches!(*d, Doc::Str(_));
        docs.push(d);
    }
    let flex = simple || mode == Break::Flex;
    let kind = if flex {
        BreakKind::Flex
    } else {
        BreakKind::Strict
    };
    let mut body = docs.pop().unwrap_or_else(|| text(""));
    while let Some(d) = docs.pop() {
        body = cons(cons(d, text(",")), cons(brk(" ", kind), body));
    }
    if flex {
        group(cons(cons(text(left), nest(body, 1)), text(right)))
    } else {
        let inner = nest(cons(text(left), cons(brk("", BreakKind::Strict), body)), 2);
        group(cons(inner, cons(brk("", BreakKind::Strict), text(right))))
    }
}

/// `~c"..."` when every element is an ASCII-printable character code.
fn charlist(items: &[Term]) -> Option<String> {
    let printable = |c: i128| (7..=13).contains(&c) || c == 27 || (32..=126).contains(&c);
    let mut chars = Vec::with_capacity(items.len());
    for (n, t) in items.iter().enumerate() {
        match t {
            // Only the first `printable_limit` elements are checked.
            Term::Int(c) if n >= PRINTABLE_LIMIT || printable(*c) => chars.push(*c),
            _ => return None,
        }
    }
    let s: String = chars
        .iter()
        .map(|&c| {
            u32::try_from(c)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}')
        })
        .collect();
    let (escaped, truncated) = escape(&s);
    Some(if truncated {
        format!("~c\"{escaped}\" ++ ...")
    } else {
        format!("~c\"{escaped}\"")
    })
}

/// A binary: a quoted string when printable, else `<<1, 2, ...>>`.
fn binary(b: &[u8], limit: &mut i64) -> D {
    match std::str::from_utf8(b) {
        Ok(s) if printable(s) => {
            let (escaped, truncated) = escape(s);
            if truncated {
                text(format!("\"{escaped}\" <> ..."))
            } else {
                text(format!("\"{escaped}\""))
            }
        }
        _ if b.is_empty() => text("<<>>"),
        _ => {
            // Inspect.BitString: at most `limit` bytes, then "...".
            let shown = usize::try_from((*limit).max(0)).unwrap_or(0);
            let mut body: Option<D> = None;
            let mut parts: Vec<D> = Vec::new();
            for (i, byte) in b.iter().enumerate() {
                if i == shown {
                    parts.push(text("..."));
                    break;
                }
                parts.push(text(byte.to_string()));
            }
            while let Some(p) = parts.pop() {
                body = Some(match body {
                    None => p,
                    Some(rest) => cons(cons(p, text(",")), cons(brk(" ", BreakKind::Flex), rest)),
                });
            }
            *limit = (*limit - i64::try_from(b.len()).unwrap_or(i64::MAX)).max(0);
            let body = body.unwrap_or_else(|| text(""));
            group(cons(cons(text("<<"), nest(body, 2)), text(">>")))
        }
    }
}

/// `String.printable?/2` with the default printable limit.
fn printable(s: &str) -> bool {
    s.chars().take(PRINTABLE_LIMIT).all(|c| {
        matches!(c, '\u{20}'..='\u{7e}' | '\n' | '\r' | '\t' | '\u{b}' | '\u{8}' | '\u{c}' | '\u{1b}' | '\u{7f}' | '\u{7}')
            || matches!(c, '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
    })
}

/// `Code.Identifier.escape(s, ?", 4096)`: the escaped text and whether it
/// was cut at the printable limit.
fn escape(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len() + 2);
    let mut rest = s;
    let mut count = 0usize;
    while let Some(c) = rest.chars().next() {
        if count == PRINTABLE_LIMIT {
            return (out, true);
        }
        count += 1;
        if rest.starts_with("#{") {
            out.push_str("\\#{");
            rest = &rest[2..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => out.push_str("\\\""),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{7f}' => out.push_str("\\d"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c if confusable(c) => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            '\u{20}'..='\u{7e}'
            | '\u{a0}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fffd}'
            | '\u{10000}'..='\u{10ffff}' => out.push(c),
            c if u32::from(c) < 0x100 => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c if u32::from(c) < 0x10000 => out.push_str(&format!("\\x{{{:04X}}}", u32::from(c))),
            c => out.push_str(&format!("\\x{{{:06X}}}", u32::from(c))),
        }
    }
    (out, false)
}

/// Characters Elixir shows as `\uXXXX` because they are invisible or
/// confusable.
fn confusable(c: char) -> bool {
    matches!(u32::from(c),
        0xFEFF | 0x2061..=0x2064 | 0x061C | 0x200E | 0x200F | 0x202A..=0x202E
        | 0x2066..=0x2069 | 0xFFF9..=0xFFFC | 0x200C | 0x200D | 0x034F | 0x00A0
        | 0x200B | 0x2060 | 0x2028 | 0x2029 | 0x2000..=0x200A | 0x205F)
}

/// `Inspect.Float`: integral values in [1, 1e16) as `N.0`, everything else
/// as `:erlang.float_to_list(f, [:short])`.
fn float(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    let a = f.abs();
    if (1.0..1.0e16).contains(&a) && f.trunc() == f {
        return format!("{f:.0}.0");
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Shortest round-trip digits and the decimal point position.
    let sci = format!("{a:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let place = exp.parse::<i64>().unwrap_or(0) + 1;
    let sign = if f < 0.0 { "-" } else { "" };
    format!("{sign}{}", insert_decimal(place, &digits))
}

/// io_lib_format's `insert_decimal/2`: fixed notation when no longer than
/// the exponent form, else `d.ddde±x`.
fn insert_decimal(place: i64, s: &str) -> String {
    let l = i64::try_from(s.len()).unwrap_or(i64::MAX);
    if place == 0 {
        return format!("0.{s}");
    }
    if place < 0 || place >= l {
        let exp_l = (place - 1).to_string();
        let exp_dot = if l == 1 { 2 } else { 1 };
        let exp_cost = i64::try_from(exp_l.len()).unwrap_or(0) + 1 + exp_dot;
        let zeros = |n: i64| "0".repeat(usize::try_from(n).unwrap_or(0));
        if place < 0 {
            if 2 - place <= exp_cost {
                return format!("0.{}{s}", zeros(-place));
            }
        } else if place - l + 2 <= exp_cost {
            return format!("{s}{}.0", zeros(place - l));
        }
        let (first, rest) = s.split_at(1);
        return if rest.is_empty() {
            format!("{first}.0e{exp_l}")
        } else {
            format!("{first}.{rest}e{exp_l}")
        };
    }
    let (a, b) = s.split_at(usize::try_from(place).unwrap_or(0));
    format!("{a}.{b}")
}

/// One entry of the formatter's work list.
#[derive(Clone)]
enum Item {
    /// A document at an indentation, flat or broken.
    Doc(usize, bool, D),
    /// End of a group decided flat or broken.
    GroupOver,
    /// Restores the "a break was seen" flag after a nested group.
    Tail(bool),
}

/// `Inspect.Algebra.format/2`; `None` width never breaks.
fn format(width: Option<usize>, doc: D, out: &mut String) {
    let mut k = 0usize;
    let mut stack = vec![Item::Doc(0, false, doc)];
    while let Some(item) = stack.pop() {
        let Item::Doc(i, broken, doc) = item else {
            continue;
        };
        match &*doc {
            Doc::Str(s) => {
                out.push_str(s);
                k += s.len();
            }
            Doc::Cons(a, b) => {
                stack.push(Item::Doc(i, broken, Rc::clone(b)));
                stack.push(Item::Doc(i, broken, Rc::clone(a)));
            }
            Doc::Nest(x, j) => stack.push(Item::Doc(i + j, broken, Rc::clone(x))),
            Doc::Break(s, BreakKind::Flex) => {
                let k2 = k + s.len();
                let fits_rest = match width {
                    None => true,
                    Some(w) => !broken || fits(w, k2, true, stack.clone()),
                };
                if fits_rest {
                    out.push_str(s);
                    k = k2;
                } else {
                    newline(out, i);
                    k = i;
                }
            }
            Doc::Break(s, BreakKind::Strict) => {
                if broken {
                    newline(out, i);
                    k = i;
                } else {
                    out.push_str(s);
                    k += s.len();
                }
            }
            Doc::Group(x) => {
                let flat = match width {
                    None => true,
                    Some(w) => fits(w, k, false, vec![Item::Doc(i, false, Rc::clone(x))]),
                };
                stack.push(Item::GroupOver);
                stack.push(Item::Doc(i, !flat, Rc::clone(x)));
            }
        }
    }
}

fn newline(out: &mut String, i: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', i));
}

/// `Inspect.Algebra.fits?/4` for the documents above.
fn fits(w: usize, mut k: usize, mut b: bool, mut stack: Vec<Item>) -> bool {
    loop {
        if k > w && b {
            return false;
        }
        let Some(item) = stack.pop() else {
            return true;
        };
        match item {
            Item::Tail(saved) => b = saved,
            Item::GroupOver => return b,
            Item::Doc(i, broken, doc) => match &*doc {
                Doc::Break(..) if broken => return true,
                Doc::Group(x) => {
                    stack.push(Item::Tail(b));
                    stack.push(Item::Doc(i, false, Rc::clone(x)));
                }
                Doc::Str(s) => k += s.len(),
                Doc::Break(s, _) => {
                    k += s.len();
                    b = true;
                }
                Doc::Nest(x, j) => stack.push(Item::Doc(i + j, broken, Rc::clone(x))),
                Doc::Cons(x, y) => {
                    stack.push(Item::Doc(i, broken, Rc::clone(y)));
                    stack.push(Item::Doc(i, broken, Rc::clone(x)));
                }
            },
        }
    }
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
