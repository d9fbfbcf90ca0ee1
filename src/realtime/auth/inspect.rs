//! Elixir's `inspect/1`, for the few client-visible texts the Elixir server
//! builds with it: the quoted `kid` of a signer error and the claim-validation
//! failures sent as `system` shutdown messages.
//!
//! Values are JSON as Erlang's `json:decode/1` gives them (`null` is the atom
//! `:null`). Defaults of `Inspect.Opts` apply: `limit: 50` items shared by the
//! whole term, `printable_limit: 4096`, infinite width (single line).

use serde_json::Value;

/// `Inspect.Opts` `limit`: items printed before `...`.
const LIMIT: i64 = 50;
/// `Inspect.Opts` `printable_limit`: characters of a string printed before `<> ...`.
const PRINTABLE_LIMIT: usize = 4096;

/// `inspect(binary)` for a UTF-8 string: double-quoted with Elixir escapes, or
/// `<<...>>` bytes when it holds non-printable characters.
pub(crate) fn string(s: &str) -> String {
    string_with_limit(s, LIMIT).0
}

/// `inspect(float)`: shortest round-trip digits in Erlang's layout.
pub(crate) fn float(f: f64) -> String {
    let abs = f.abs();
    if (1.0..1.0e16).contains(&abs) && f.trunc() == f {
        return format!("{}.0", f as i64);
    }
    erlang_short(f)
}

/// `inspect([message: message, claim: claim, claim_val: value])`, the error
/// Joken returns when a claim fails validation.
pub(crate) fn claim_error(message: &ClaimMessage, claim: &str, value: &Value) -> String {
    // The keyword list is a container: each of its three items costs one.
    let message = match message {
        ClaimMessage::Now(now) => now.to_string(),
        ClaimMessage::InvalidToken => string("Invalid token"),
    };
    let (value, _) = json_with_limit(value, LIMIT - 3);
    format!(
        "[message: {message}, claim: {}, claim_val: {value}]",
        string(claim)
    )
}

/// The `message` of a Joken claim error.
pub(crate) enum ClaimMessage {
    /// `exp` failures carry the validation time.
    Now(i64),
    /// Every other claim says `"Invalid token"`.
    InvalidToken,
}

/// Inspects `v` with `limit` items left; returns the text and the limit left.
fn json_with_limit(v: &Value, limit: i64) -> (String, i64) {
    match v {
        Value::Null => (":null".into(), limit),
        Value::Bool(b) => (b.to_string(), limit),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => (i.to_string(), limit),
            (None, Some(u), _) => (u.to_string(), limit),
            (_, _, Some(f)) => (float(f), limit),
            _ => (n.to_string(), limit),
        },
        Value::String(s) => string_with_limit(s, limit),
        Value::Array(items) => {
            if items.is_empty() {
                return ("[]".into(), limit);
            }
            if let Some(chars) = ascii_charlist(items) {
                let (body, cut) = escape(&chars);
                let tail = if cut { " ++ ..." } else { "" };
                return (format!("~c\"{body}\"{tail}"), limit);
            }
            container("[", "]", items.iter(), limit, |item, limit| {
                json_with_limit(item, limit)
            })
        }
        Value::Object(map) => {
            if map.is_empty() {
                return ("%{}".into(), limit);
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            container("%{", "}", entries.into_iter(), limit, |(k, v), limit| {
                let (key, limit) = string_with_limit(k, limit);
                let (val, limit) = json_with_limit(v, limit);
                (format!("{key} => {val}"), limit)
            })
        }
    }
}

/// `container_doc_with_opts`: each item costs one from the shared limit and
/// `...` replaces what no longer fits.
fn container<T>(
    open: &str,
    close: &str,
    items: impl Iterator<Item = T>,
    mut limit: i64,
    mut render: impl FnMut(T, i64) -> (String, i64),
) -> (String, i64) {
    let mut docs = Vec::new();
    for item in items {
        if limit <= 0 {
            docs.push("...".to_string());
            break;
        }
        let (doc, left) = render(item, limit - 1);
        docs.push(doc);
        limit = left;
    }
    (format!("{open}{}{close}", docs.join(", ")), limit)
}

/// A JSON array Elixir would print as a charlist (`List.ascii_printable?/2`).
fn ascii_charlist(items: &[Value]) -> Option<String> {
    let mut out = String::new();
    for item in items.iter().take(PRINTABLE_LIMIT) {
        let c = item.as_i64()?;
        let ok = (7..=13).contains(&c) || c == 27 || (32..=126).contains(&c);
        if !ok {
            return None;
        }
        out.push(char::from(c as u8));
    }
    // Past the printable limit the rest is not checked, but it is printed.
    for item in items.iter().skip(PRINTABLE_LIMIT) {
        match item
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .and_then(char::from_u32)
        {
            Some(c) => out.push(c),
            None => return None,
        }
    }
    Some(out)
}

/// `inspect` of a binary with `limit` items left.
fn string_with_limit(s: &str, limit: i64) -> (String, i64) {
    if printable(s) {
        let (body, cut) = escape(s);
        let tail = if cut { " <> ..." } else { "" };
        return (format!("\"{body}\"{tail}"), limit);
    }
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut counter = limit;
    for (i, b) in bytes.iter().enumerate() {
        if counter == 0 {
            parts.push("...".to_string());
            break;
        }
        parts.push(b.to_string());
        if i + 1 < bytes.len() {
            counter -= 1;
        }
    }
    let left = (limit - bytes.len() as i64).max(0);
    (format!("<<{}>>", parts.join(", ")), left)
}

/// `String.printable?(s, 4096)`.
fn printable(s: &str) -> bool {
    s.chars().take(PRINTABLE_LIMIT).all(|c| {
        let c = c as u32;
        (0x20..=0x7E).contains(&c)
            || matches!(
                c,
                0x0A | 0x0D | 0x09 | 0x0B | 0x08 | 0x0C | 0x1B | 0x7F | 0x07
            )
            || (0xA0..=0xD7FF).contains(&c)
            || (0xE000..=0xFFFD).contains(&c)
            || (0x10000..=0x10FFFF).contains(&c)
    })
}

/// `Code.Identifier.escape(s, ?", 4096)`: the escaped body and whether it was cut.
fn escape(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut count = 0usize;
    while let Some(c) = chars.next() {
        if count == PRINTABLE_LIMIT {
            return (out, true);
        }
        count += 1;
        match c {
            '"' => out.push_str("\\\""),
            '#' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push_str("\\#{");
            }
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{7F}' => out.push_str("\\d"),
            '\u{1B}' => out.push_str("\\e"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => escape_char(c, &mut out),
        }
    }
    (out, false)
}

/// `Code.Identifier.escape_char/2` for everything without a short escape.
fn escape_char(c: char, out: &mut String) {
    let u = c as u32;
    let confusing = u == 0xFEFF
        || (0x2061..=0x2064).contains(&u)
        || matches!(u, 0x061C | 0x200E | 0x200F)
        || (0x202A..=0x202E).contains(&u)
        || (0x2066..=0x2069).contains(&u)
        || (0xFFF9..=0xFFFC).contains(&u)
        || matches!(
            u,
            0x200C | 0x200D | 0x034F | 0x00A0 | 0x200B | 0x2060 | 0x2028 | 0x2029
        )
        || (0x2000..=0x200A).contains(&u)
        || u == 0x205F;
    if confusing {
        out.push_str(&format!("\\u{u:04X}"));
    } else if (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || (0xE000..=0xFFFD).contains(&u)
        || (0x10000..=0x10FFFF).contains(&u)
    {
        out.push(c);
    } else if u < 0x100 {
        out.push_str(&format!("\\x{u:02X}"));
    } else if u < 0x10000 {
        out.push_str(&format!("\\x{{{u:04X}}}"));
    } else {
        out.push_str(&format!("\\x{{{u:06X}}}"));
    }
}

/// `:erlang.float_to_list(f, [:short])`: Ryu's shortest digits laid out the
/// way OTP's `to_chars` chooses between fixed and scientific notation.
fn erlang_short(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    if !f.is_finite() {
        // JSON cannot carry these; keep the output defined anyway.
        return f.to_string();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sci_exp: i32 = exp.parse().unwrap_or(0);
    let olength = digits.len() as i32;
    let ryu_exp = sci_exp - (olength - 1);
    let output: u64 = digits.parse().unwrap_or(0);

    let (lower, upper) = if olength == 1 {
        (-4, 2)
    } else if sci_exp >= 10 {
        (-(olength + 2), 2)
    } else {
        (-(olength + 2), 1)
    };
    let fixed = lower <= ryu_exp
        && ryu_exp <= upper
        && !((output >= (1u64 << 53) && ryu_exp == 0)
            || (output > (1u64 << 52) / 5 && ryu_exp == 1)
            || (output > (1u64 << 51) / 25 && ryu_exp == 2));

    let sign = if f < 0.0 { "-" } else { "" };
    if fixed {
        let whole = olength + ryu_exp;
        let body = if ryu_exp >= 0 {
            format!("{digits}{}.0", "0".repeat(ryu_exp as usize))
        } else if whole > 0 {
            format!(
                "{}.{}",
                &digits[..whole as usize],
                &digits[whole as usize..]
            )
        } else {
            format!("0.{}{digits}", "0".repeat((-whole) as usize))
        };
        format!("{sign}{body}")
    } else {
        let rest = if digits.len() > 1 { &digits[1..] } else { "0" };
        format!("{sign}{}.{rest}e{sci_exp}", &digits[..1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_match_elixir() {
        let cases = [
            (1699999999.5, "1699999999.5"),
            (100.0, "100.0"),
            (1.0e16, "1.0e16"),
            (1.5e16, "1.5e16"),
            (0.0001, "0.0001"),
            (1.0e-5, "1.0e-5"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (123456789012.5, "123456789012.5"),
            (1.234e-4, "1.234e-4"),
            (0.001234, "0.001234"),
            (1.0e300, "1.0e300"),
        ];
        for (f, want) in cases {
            assert_eq!(float(f), want, "{f}");
        }
    }

    #[test]
    fn strings_match_elixir() {
        assert_eq!(string("kid-1"), "\"kid-1\"");
        assert_eq!(string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(string("#{x}"), "\"\\#{x}\"");
        assert_eq!(string("tab\there\n"), "\"tab\\there\\n\"");
        assert_eq!(string("nbsp\u{a0}"), "\"nbsp\\u00A0\"");
        assert_eq!(string("é✓"), "\"é✓\"");
        // A control character makes the binary non-printable.
        assert_eq!(string("a\u{1}b"), "<<97, 1, 98>>");
        assert_eq!(string(""), "\"\"");
    }

    #[test]
    fn json_terms_match_elixir() {
        let show = |v: Value| json_with_limit(&v, LIMIT).0;
        assert_eq!(show(json!(null)), ":null");
        assert_eq!(show(json!([1, 2, 300])), "[1, 2, 300]");
        assert_eq!(show(json!([72, 105])), "~c\"Hi\"");
        assert_eq!(
            show(json!({"b": 1, "a": [true]})),
            "%{\"a\" => [true], \"b\" => 1}"
        );
        assert_eq!(show(json!([])), "[]");
        assert_eq!(show(json!({})), "%{}");
        let long: Vec<i64> = (1000..1060).collect();
        let text = show(json!(long));
        assert!(text.ends_with(", 1049, ...]"), "{text}");
    }

    #[test]
    fn claim_error_is_an_inspected_keyword_list() {
        let text = claim_error(&ClaimMessage::Now(1700000100), "exp", &json!(1699999999.5));
        assert_eq!(
            text,
            "[message: 1700000100, claim: \"exp\", claim_val: 1699999999.5]"
        );
        let text = claim_error(&ClaimMessage::InvalidToken, "iss", &json!("x"));
        assert_eq!(
            text,
            "[message: \"Invalid token\", claim: \"iss\", claim_val: \"x\"]"
        );
    }
}
