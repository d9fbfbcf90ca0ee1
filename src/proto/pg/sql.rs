//! Quoting text into SQL, for the few statements that cannot take bound
//! parameters (one simple-query round trip carries a whole batch).
//!
//! [`literal`] writes an escape-string constant (`E'...'`), whose reading
//! does not depend on `standard_conforming_strings`: a plain `'...'` with
//! only quotes doubled is read differently when that setting is off (a
//! backslash then escapes the quote that follows it, and the doubled quote
//! after it ends the string), which lets the rest of the text escape into
//! SQL. The connection also turns the setting on at startup, but the
//! quoting does not rely on it.
//!
//! Text with a NUL byte is refused: Postgres text cannot hold it, and the
//! protocol's C strings would end there.
//!
//! [`read_literal`] reads a string constant back the way the server's
//! lexer does, under either setting; tests and the fuzz target use it to
//! prove that quoted client text stays one constant with the same value.

/// `s` as a string constant that reads back as `s` whatever
/// `standard_conforming_strings` says; `None` if `s` holds a NUL.
pub fn literal(s: &str) -> Option<String> {
    if s.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for ch in s.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Some(out)
}

/// `s` as a string constant in a replication command (START_REPLICATION's
/// options). Those have their own lexer, which knows neither `E'...'` nor
/// backslash escapes in any setting: only the quote is doubled. `None` if
/// `s` holds a NUL.
pub fn replication_literal(s: &str) -> Option<String> {
    if s.contains('\0') {
        return None;
    }
    Some(format!("'{}'", s.replace('\'', "''")))
}

/// `s` as a quoted identifier; `None` if it is empty or holds a NUL.
pub fn ident(s: &str) -> Option<String> {
    if s.is_empty() || s.contains('\0') {
        return None;
    }
    Some(format!("\"{}\"", s.replace('"', "\"\"")))
}

/// Reads the string constant at the start of `sql` as the server's lexer
/// would with `standard_conforming_strings` = `conforming`: its value and
/// the bytes it spans. `None` if `sql` does not start with a complete one.
/// Backslash escapes other than `\\` and `\'` read as the escaped
/// character (enough to compare values: [`literal`] never writes them).
pub fn read_literal(sql: &str, conforming: bool) -> Option<(String, usize)> {
    let (escapes, start) = match sql.as_bytes() {
        [b'E' | b'e', b'\'', ..] => (true, 2),
        [b'\'', ..] => (!conforming, 1),
        _ => return None,
    };
    let mut value = String::new();
    let mut chars = sql[start..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if escapes => {
                let (_, next) = chars.next()?;
                value.push(next);
            }
            '\'' => {
                if let Some(&(_, '\'')) = chars.peek() {
                    chars.next();
                    value.push('\'');
                } else {
                    return Some((value, start + i + 1));
                }
            }
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_back_under_either_setting() {
        for s in [
            "",
            "plain",
            "it's",
            "back\\slash",
            "a\\' OR true --",
            "a\\') OR (true)) IS TRUE; --",
            "\\\\''\\",
            "ünïcødé 'ok'",
        ] {
            let q = literal(s).unwrap();
            for conforming in [true, false] {
                assert_eq!(
                    read_literal(&q, conforming),
                    Some((s.to_owned(), q.len())),
                    "{s:?} under standard_conforming_strings={conforming}"
                );
            }
        }
    }

    #[test]
    fn a_plain_doubled_quote_literal_breaks_out_when_backslashes_escape() {
        // What the old quoting wrote: safe only with the setting on.
        let old = "'a\\'' OR true OR ''x'";
        let (v, n) = read_literal(old, false).unwrap();
        assert_eq!((v.as_str(), n), ("a'", 5));
        let (v, n) = read_literal(old, true).unwrap();
        assert_eq!((v.as_str(), n), ("a\\' OR true OR 'x", old.len()));
    }

    #[test]
    fn nul_is_refused() {
        assert_eq!(literal("a\0b"), None);
        assert_eq!(ident("a\0b"), None);
        assert_eq!(ident(""), None);
        assert_eq!(ident("we\"ird").as_deref(), Some("\"we\"\"ird\""));
        assert_eq!(replication_literal("a\0"), None);
        assert_eq!(replication_literal("it's\\").as_deref(), Some("'it''s\\'"));
    }
}
