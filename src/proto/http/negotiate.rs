//! Media types and content negotiation (Plug / Phoenix rules).

use super::reason_phrase;

/// Parses a media type the way `Plug.Conn.Utils.content_type/1` does:
/// lower-cased `(type, subtype)`, parameters ignored; `None` for wildcards
/// or anything malformed.
pub fn media_type(ct: &str) -> Option<(String, String)> {
    let t = strip_plug_spaces(ct);
    let (ty, rest) = t.split_once('/')?;
    if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let end = rest
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_')))
        .unwrap_or(rest.len());
    let (sub, params) = rest.split_at(end);
    let params = strip_plug_spaces(params);
    if !(params.is_empty() || params.starts_with(';')) {
        return None;
    }
    Some((ty.to_ascii_lowercase(), sub.to_ascii_lowercase()))
}

/// Plug's `strip_spaces`: leading spaces, tabs and CRLFs; trailing spaces
/// and tabs.
fn strip_plug_spaces(mut s: &str) -> &str {
    loop {
        if let Some(r) = s.strip_prefix("\r\n") {
            s = r;
        } else if let Some(r) = s.strip_prefix([' ', '\t']) {
            s = r;
        } else {
            break;
        }
    }
    s.trim_end_matches([' ', '\t'])
}

/// The format Phoenix renders an error page in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// `text/html`: the body is the bare reason phrase.
    Html,
    /// `application/json`: the body is the reason phrase as a JSON string.
    Json,
}

/// The format of errors raised outside controllers (bad JSON body, body too
/// large, crashes): `render_errors` accepts `html` and `json`, negotiated
/// from `Accept` like `Phoenix.Controller.accepts/2`, falling back to HTML.
/// No `Accept`, `*/*`, or any header containing `*/*` gives HTML.
pub fn error_format(accept: Option<&str>) -> ErrorFormat {
    match negotiate(accept, &["html", "json"]) {
        Some("json") => ErrorFormat::Json,
        _ => ErrorFormat::Html,
    }
}

/// Content type and body of a Phoenix-rendered error page: the
/// `ErrorView` has no templates, so the body is the status's reason phrase
/// (`Bad Request`), as HTML text or as a JSON string per [`error_format`].
pub fn phoenix_error(status: u16, accept: Option<&str>) -> (&'static str, Vec<u8>) {
    let reason = reason_phrase(status);
    match error_format(accept) {
        ErrorFormat::Html => ("text/html; charset=utf-8", reason.as_bytes().to_vec()),
        ErrorFormat::Json => (
            "application/json; charset=utf-8",
            format!("\"{reason}\"").into_bytes(),
        ),
    }
}

/// Whether `plug :accepts, formats` lets a request with this `Accept`
/// through (else Phoenix raises 406 Not Acceptable, rendered by
/// [`phoenix_error`]). The batch endpoint accepts `["json"]`, the single
/// endpoint `["json", "octet-stream"]`. (A `_format` parameter, which
/// Phoenix checks first, is not modelled.)
pub fn accepts(accept: Option<&str>, formats: &[&str]) -> bool {
    negotiate(accept, formats).is_some()
}

/// What a media range in `Accept` can match.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Exts {
    /// `*/*`: the first accepted format.
    Any,
    /// `type/*`: a format whose MIME type has this type.
    Type(String),
    /// `type/subtype`: its registered extensions.
    List(&'static [&'static str]),
}

/// `Phoenix.Controller.accepts/2` on the first `Accept` header.
fn negotiate<'f>(accept: Option<&str>, formats: &[&'f str]) -> Option<&'f str> {
    let first = *formats.first()?;
    let header = match accept {
        None => return Some(first),
        Some("*/*") => return Some(first),
        Some(h) => h,
    };
    if header.contains("*/*") && formats.contains(&"html") {
        return Some("html");
    }
    let mut acc: Vec<(f64, &str, Exts)> = Vec::new();
    for h in header.split(',') {
        let Some((ty, sub, params)) = media_range(h) else {
            continue;
        };
        let exts = match (ty.as_str(), sub.as_str()) {
            ("*", "*") => Exts::Any,
            (_, "*") => Exts::Type(ty),
            _ => Exts::List(mime_extensions(&ty, &sub)),
        };
        let q = parse_q(params);
        if q == 1.0 {
            if let Some(f) = find_format(&exts, formats) {
                return Some(f);
            }
        }
        acc.push((-q, h, exts));
    }
    acc.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| a.1.cmp(b.1))
            .then_with(|| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal))
    });
    acc.iter().find_map(|(_, _, e)| find_format(e, formats))
}

fn find_format<'f>(exts: &Exts, formats: &[&'f str]) -> Option<&'f str> {
    match exts {
        Exts::Any => formats.first().copied(),
        Exts::List(list) => list
            .iter()
            .find_map(|e| formats.iter().find(|f| *f == e).copied()),
        Exts::Type(t) => formats.iter().find(|f| mime_type_of(f) == t).copied(),
    }
}

/// The type half of `MIME.type(format)` (unknown formats are
/// `application/octet-stream`).
fn mime_type_of(format: &str) -> &'static str {
    match format {
        "html" | "htm" | "txt" | "text" | "css" | "csv" => "text",
        _ => "application",
    }
}

/// `MIME.extensions/1` for the types that matter here.
fn mime_extensions(ty: &str, sub: &str) -> &'static [&'static str] {
    match (ty, sub) {
        ("application", "json") => &["json"],
        ("text", "html") => &["html", "htm"],
        ("text", "plain") => &["txt", "text"],
        ("application", "octet-stream") => &["bin"],
        _ => &[],
    }
}

/// `Plug.Conn.Utils.media_type/1` (wildcards allowed): lower-cased type,
/// subtype and the raw parameter text.
fn media_range(h: &str) -> Option<(String, String, &str)> {
    let t = strip_plug_spaces(h);
    if let Some(rest) = t.strip_prefix("*/*") {
        return params_tail(rest).map(|p| ("*".to_owned(), "*".to_owned(), p));
    }
    let (ty, rest) = t.split_once('/')?;
    if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    if let Some(rest) = rest.strip_prefix('*') {
        return params_tail(rest).map(|p| (ty.to_ascii_lowercase(), "*".to_owned(), p));
    }
    let end = rest
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_')))
        .unwrap_or(rest.len());
    let (sub, params) = rest.split_at(end);
    params_tail(params).map(|p| (ty.to_ascii_lowercase(), sub.to_ascii_lowercase(), p))
}

fn params_tail(rest: &str) -> Option<&str> {
    let rest = strip_plug_spaces(rest);
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix(';')
    }
}

/// The `q` parameter as `Float.parse/1` reads it; 1.0 when absent or
/// unparsable.
fn parse_q(params: &str) -> f64 {
    for p in params.split(';') {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let v = v.trim().trim_matches('"');
        let b = v.as_bytes();
        let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == int_start {
            return 1.0;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        return v[..i].parse().unwrap_or(1.0);
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[test]
    fn media_types_like_plug() {
        let mt = |s: &str| media_type(s).map(|(a, b)| format!("{a}/{b}"));
        assert_eq!(mt("application/json").as_deref(), Some("application/json"));
        assert_eq!(
            mt("\r\n APPLICATION/Vnd.Api+JSON ; charset=utf-8").as_deref(),
            Some("application/vnd.api+json")
        );
        assert_eq!(mt("text/*"), None);
        assert_eq!(mt("*/*"), None);
        assert_eq!(mt("x y"), None);
        assert_eq!(mt("a/b c"), None);
        assert_eq!(mt("/json"), None);
    }

    #[test]
    fn accept_negotiation_like_phoenix() {
        let json = &["json"][..];
        assert!(accepts(None, json));
        assert!(accepts(Some("*/*"), json));
        assert!(accepts(Some("application/json"), json));
        assert!(accepts(Some("application/json, text/plain, */*"), json));
        assert!(accepts(Some("application/*"), json));
        assert!(accepts(Some("text/html;q=0.9, */*;q=0.1"), json));
        assert!(!accepts(Some("text/html"), json));
        assert!(!accepts(Some("application/xml"), json));
        // MIME has no "octet-stream" extension: only json can match.
        assert!(!accepts(
            Some("application/octet-stream"),
            &["json", "octet-stream"]
        ));
        assert!(accepts(Some("application/*"), &["json", "octet-stream"]));

        assert_eq!(error_format(None), ErrorFormat::Html);
        assert_eq!(error_format(Some("*/*")), ErrorFormat::Html);
        assert_eq!(
            error_format(Some("application/json, */*")),
            ErrorFormat::Html
        );
        assert_eq!(error_format(Some("application/json")), ErrorFormat::Json);
        assert_eq!(
            error_format(Some("text/html;q=0.5, application/json;q=0.8")),
            ErrorFormat::Json
        );
        assert_eq!(error_format(Some("image/png")), ErrorFormat::Html);
        assert_eq!(
            phoenix_error(400, None),
            ("text/html; charset=utf-8", b"Bad Request".to_vec())
        );
        assert_eq!(
            phoenix_error(413, Some("application/json")),
            (
                "application/json; charset=utf-8",
                b"\"Request Entity Too Large\"".to_vec()
            )
        );
    }

    proptest! {
        #[test]
        fn accept_never_panics(h in "\\PC{0,60}") {
            let _ = accepts(Some(&h), &["json", "octet-stream"]);
            let _ = error_format(Some(&h));
            let _ = media_type(&h);
        }
    }
}
