//! Query strings and percent-decoding (form and path-segment rules).

use std::borrow::Cow;

/// The value of query parameter `name`, decoded per
/// `application/x-www-form-urlencoded` (`%XX`, `+` as space).
///
/// Like Plug (`Plug.Conn.Query`), the **last** occurrence wins, a pair
/// without `=` has the empty value, and names are compared after decoding.
/// Malformed `%` escapes are kept literally (Plug answers 400 instead);
/// bytes that do not form UTF-8 after decoding are replaced (U+FFFD).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let mut found = None;
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k) == name {
            found = Some(v);
        }
    }
    found.map(form_decode)
}

/// Decodes `application/x-www-form-urlencoded` text: `%XX` escapes and `+`
/// as space; malformed escapes are kept. Borrows when there is nothing to
/// decode.
pub fn form_decode(s: &str) -> Cow<'_, str> {
    decode(s, true).unwrap_or(Cow::Borrowed(s))
}

/// Decodes a path segment like Elixir's `URI.decode/1` (what the Phoenix
/// router applies to path parameters): `%XX` escapes only, `+` stays.
/// `None` for a malformed escape (Plug answers 400). Invalid UTF-8 after
/// decoding is replaced (U+FFFD).
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false).map(Cow::into_owned)
}

/// `None` only when `!form` and an escape is malformed.
fn decode(s: &str, form: bool) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || (form && b == b'+')) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex_val(bytes.get(i + 1)), hex_val(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ if form => {
                    out.push(b'%');
                    i += 1;
                }
                _ => return None,
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

pub(super) fn hex_val(b: Option<&u8>) -> Option<u8> {
    match b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[test]
    fn query_params_decode() {
        let q = "apikey=abc%2Bdef&vsn=2.0.0&log_level=warn&x=a+b&empty&e=";
        assert_eq!(query_param(q, "apikey").as_deref(), Some("abc+def"));
        assert_eq!(query_param(q, "vsn").as_deref(), Some("2.0.0"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "e").as_deref(), Some(""));
        assert_eq!(query_param(q, "nope"), None);
        assert!(matches!(query_param(q, "vsn"), Some(Cow::Borrowed(_))));
        assert_eq!(form_decode("a+b%21"), "a b!");
    }

    #[test]
    fn query_param_last_wins_and_names_are_decoded() {
        assert_eq!(query_param("a=1&a=2", "a").as_deref(), Some("2"));
        assert_eq!(query_param("%61pi=1", "api").as_deref(), Some("1"));
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=%C3%A9", "a").as_deref(), Some("é"));
        assert_eq!(query_param("a=%FF", "a").as_deref(), Some("\u{FFFD}"));
        assert_eq!(query_param("a=%41", "a").as_deref(), Some("A"));
        assert_eq!(query_param("a=x%4", "a").as_deref(), Some("x%4"));
    }

    #[test]
    fn path_segment_decoding() {
        assert_eq!(percent_decode("room%3A1").as_deref(), Some("room:1"));
        assert_eq!(
            percent_decode("a+b").as_deref(),
            Some("a+b"),
            "+ is not a space in paths"
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%C3%A9%FF").as_deref(), Some("é\u{FFFD}"));
    }

    proptest! {
        #[test]
        fn query_param_never_panics(q in "[ -~]{0,80}", name in "[a-z%+=&]{0,6}") {
            let _ = query_param(&q, &name);
            let _ = percent_decode(&q);
        }

        #[test]
        fn query_param_round_trips(v in "[ -~]{0,40}") {
            let mut enc = String::new();
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() { enc.push(b as char) } else { enc.push_str(&format!("%{b:02X}")) }
            }
            let q = format!("x=1&k={enc}&y=2");
            let got = query_param(&q, "k");
            prop_assert_eq!(got.as_deref(), Some(v.as_str()));
        }
    }
}
