//! The tenant a Host header names (PROTOCOL 1.3).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons: leave it alone.
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The tenant external id a Host names (PROTOCOL 1.3): the port is dropped,
/// then everything before the first `.` (the whole host without a dot).
/// `abc.supabase.co:443` -> `abc`. Case is preserved; see
/// [`host_tenant_lowercase`].
pub fn host_tenant(host: &str) -> &str {
    let h = strip_port(host);
    match h.find('.') {
        Some(i) => &h[..i],
        None => h,
    }
}

/// [`host_tenant`] lower-cased, as the Elixir server sees it (Cowboy
/// lower-cases the Host). Borrows when already lower-case.
pub fn host_tenant_lowercase(host: &str) -> Cow<'_, str> {
    let t = host_tenant(host);
    if t.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(t.to_ascii_lowercase())
    } else {
        Cow::Borrowed(t)
    }
}

/// Whether a Host has no tenant subdomain: an IPv4 address, an IPv6 literal
/// (`[::1]`, port allowed) or `localhost` (any case, optional trailing dot).
/// Such hosts resolve to the default tenant.
pub fn is_bare_host(host: &str) -> bool {
    let h = strip_port(host);
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<Ipv4Addr>().is_ok()
        || h.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tenant_from_host() {
        assert_eq!(host_tenant("abc.supabase.co"), "abc");
        assert_eq!(host_tenant("abc.supabase.co:443"), "abc");
        assert_eq!(
            host_tenant("realtime-dev.supabase-realtime"),
            "realtime-dev"
        );
        assert_eq!(host_tenant("realtime-dev:4000"), "realtime-dev");
        assert_eq!(host_tenant("nodot"), "nodot");
        assert_eq!(host_tenant(".x"), "");
        assert_eq!(host_tenant_lowercase("ABC.example.com"), "abc");
        assert!(matches!(
            host_tenant_lowercase("abc.x"),
            Cow::Borrowed("abc")
        ));
    }

    #[test]
    fn bare_hosts() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:4000",
            "[::1]",
            "[::1]:4000",
            "localhost",
            "LOCALHOST:4000",
            "localhost.",
            "::1",
        ] {
            assert!(is_bare_host(h), "{h}");
        }
        for h in [
            "abc.supabase.co",
            "realtime-dev",
            "1.2.3",
            "[zz]",
            "localhost.example.com",
            "256.1.1.1",
        ] {
            assert!(!is_bare_host(h), "{h}");
        }
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a:b"), "a:b");
    }
}
