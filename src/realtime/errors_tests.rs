//! The README's error tables and the error enums must say the same thing:
//! every variant's code and text is listed, and every listed error is one a
//! variant produces.

use super::*;

const README: &str = include_str!("../../README.md");

/// The rows of the README's "Error codes" section whose first cell passes
/// `first`, as (first cell, code spans of the second cell).
fn rows(first: impl Fn(&str) -> bool) -> Vec<(String, Vec<String>)> {
    let start = README
        .find("\n## Error codes")
        .expect("README has an Error codes section");
    let section = &README[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            (cells.len() == 3 && first(cells[0]))
                .then(|| (cells[0].to_owned(), code_spans(cells[1])))
        })
        .collect()
}

/// The Markdown code spans of `cell` (a run of N backticks up to the next
/// run of exactly N), or `["(empty)"]`-style plain text when it has none.
fn code_spans(cell: &str) -> Vec<String> {
    let b = cell.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|&&c| c == b'`').count();
        let open = i + run;
        let mut j = open;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let r = b[j..].iter().take_while(|&&c| c == b'`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        let close = close.expect("unclosed code span in the README's error table");
        spans.push(cell[open..close].to_owned());
        i = close + run;
    }
    if spans.is_empty() {
        spans.push(cell.to_owned());
    }
    spans
}

/// Sample values are 7, kid `k`, topic `TOPIC` and database message
/// `DBMSG`; the README writes `N`, `"<kid>"`, `<sub-topic>` and
/// `<database message>`.
fn as_listed(text: &str) -> String {
    text.replace('7', "N")
        .replace("\"k\"", "\"<kid>\"")
        .replace("TOPIC", "<sub-topic>")
        .replace("DBMSG", "<database message>")
}

fn auth_samples() -> Vec<AuthError> {
    vec![
        AuthError::MissingApiKey,
        AuthError::Expired { seconds_ago: 7 },
        AuthError::MissingClaims,
        AuthError::ExpInvalid,
        AuthError::Malformed,
        AuthError::BadSignature,
        AuthError::Signer,
        AuthError::SignerKid("k".into()),
        AuthError::ClaimsNotObject,
        AuthError::HeaderNotObject,
        AuthError::InvalidClaim {
            claim: "iat".into(),
            value: serde_json::json!("x"),
            now: 0,
        },
        AuthError::Other("x".into()),
    ]
}

fn join_samples() -> Vec<JoinError> {
    let mut v = vec![
        JoinError::TopicNameRequired,
        JoinError::TopicNameTooLong { max: 7 },
        JoinError::PresenceKeyTooLong { max: 7 },
        JoinError::RealtimeRestarting,
        JoinError::RealtimeDisabledForTenant,
        JoinError::PrivateOnly,
        JoinError::ConnectionRateLimitReached,
        JoinError::ClientJoinRateLimitReached,
        JoinError::ChannelRateLimitReached,
        JoinError::UnableToConnectToProject,
        JoinError::Unauthorized("TOPIC".into()),
        JoinError::QueryCanceled("DBMSG".into()),
        JoinError::MissingPartition,
        JoinError::IncreaseConnectionPool,
        JoinError::ReplayPublic,
        JoinError::ReplayParamsInvalid,
        JoinError::ReplayFailed,
        JoinError::UnknownErrorOnChannel,
    ];
    v.extend(auth_samples().into_iter().map(JoinError::Token));
    // No wildcard: a new variant fails to compile until it has a sample.
    for e in &v {
        match e {
            JoinError::TopicNameRequired
            | JoinError::TopicNameTooLong { .. }
            | JoinError::PresenceKeyTooLong { .. }
            | JoinError::RealtimeRestarting
            | JoinError::RealtimeDisabledForTenant
            | JoinError::PrivateOnly
            | JoinError::ConnectionRateLimitReached
            | JoinError::ClientJoinRateLimitReached
            | JoinError::ChannelRateLimitReached
            | JoinError::Token(_)
            | JoinError::UnableToConnectToProject
            | JoinError::Unauthorized(_)
            | JoinError::QueryCanceled(_)
            | JoinError::MissingPartition
            | JoinError::IncreaseConnectionPool
            | JoinError::ReplayPublic
            | JoinError::ReplayParamsInvalid
            | JoinError::ReplayFailed
            | JoinError::UnknownErrorOnChannel => {}
        }
    }
    v
}

fn connect_samples() -> Vec<ConnectError> {
    let mut v = vec![
        ConnectError::UnsupportedVsn,
        ConnectError::MissingApiKey,
        ConnectError::TenantNotFound,
        ConnectError::TenantSuspended,
        ConnectError::TooManyConnectedUsers,
        ConnectError::TooManyJoinsPerSecond,
        ConnectError::Internal,
    ];
    v.extend(auth_samples().into_iter().map(ConnectError::Token));
    for e in &v {
        match e {
            ConnectError::UnsupportedVsn
            | ConnectError::MissingApiKey
            | ConnectError::TenantNotFound
            | ConnectError::TenantSuspended
            | ConnectError::Token(_)
            | ConnectError::TooManyConnectedUsers
            | ConnectError::TooManyJoinsPerSecond
            | ConnectError::Internal => {}
        }
    }
    v
}

/// (code or `(no code)`, message as listed) of a join error.
fn join_listing(e: &JoinError) -> (String, String) {
    let code = e
        .code()
        .map_or("(no code)".to_owned(), |c| format!("`{c}`"));
    (code, as_listed(&e.message()))
}

#[test]
fn every_join_error_is_in_the_readme_table_and_back() {
    let table = rows(|c| c.starts_with('`') || c == "(no code)");
    assert!(table.len() >= 10, "join error table not found: {table:?}");
    let produced: Vec<(String, String)> = join_samples().iter().map(join_listing).collect();
    for (code, msg) in &produced {
        assert!(
            table.iter().any(|(c, m)| c == code && m.contains(msg)),
            "{code}: {msg:?} is not in the README's join error table"
        );
    }
    for (code, msgs) in &table {
        for m in msgs {
            if m == "unmatched topic" {
                continue; // a routing answer, not a refused join
            }
            assert!(
                produced.iter().any(|(c, p)| c == code && p == m),
                "the README lists {code} {m:?}, which no JoinError gives"
            );
        }
    }
}

#[test]
fn join_reasons_are_code_colon_message() {
    for e in join_samples() {
        let want = match e.code() {
            Some(c) => format!("{c}: {}", e.message()),
            None => e.message(),
        };
        assert_eq!(e.reason(), want);
        if let JoinError::Token(a) = &e {
            assert_eq!(e.reason(), a.join_reason(), "{a:?}");
        }
    }
    assert_eq!(
        JoinError::TopicNameTooLong { max: 255 }.reason(),
        "TopicNameTooLong: Topic must be at most 255 bytes"
    );
    assert_eq!(JoinError::ClientJoinRateLimitReached.close(), Some(1001));
    assert_eq!(JoinError::ChannelRateLimitReached.close(), None);
}

#[test]
fn every_connect_error_is_in_the_readme_table_and_back() {
    let table = rows(|c| c.parse::<u16>().is_ok());
    assert!(
        table.len() >= 10,
        "connect error table not found: {table:?}"
    );
    let produced: Vec<(u16, String)> = connect_samples()
        .iter()
        .map(|e| {
            let m = e.message().map_or("(empty)".to_owned(), |m| as_listed(&m));
            (e.status(), m)
        })
        .collect();
    for (status, msg) in &produced {
        assert!(
            table
                .iter()
                .any(|(s, m)| s == &status.to_string() && m.contains(msg)),
            "{status} {msg:?} is not in the README's connect error table"
        );
    }
    for (status, msgs) in &table {
        for m in msgs {
            assert!(
                produced
                    .iter()
                    .any(|(s, p)| &s.to_string() == status && p == m),
                "the README lists {status} {m:?}, which no ConnectError gives"
            );
        }
    }
}
