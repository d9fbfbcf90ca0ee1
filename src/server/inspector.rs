//! The inspector: a page served by the server itself (`/`, `/inspector`)
//! with its own small Phoenix client (`inspector/app.js`), to join a
//! channel and watch what flows, and `/status` (`inspector/status.js`):
//! per-shard figures read from `/metrics`, tenants from the admin API. The files are embedded in the binary; no
//! build step, nothing fetched from elsewhere. `INSPECTOR_ENABLED=false`
//! leaves these paths to the catch-all 404.
//!
//! The page holds no secret. `/inspector/config.json` names the default
//! tenant and, only while that tenant is signed with the public
//! development secret, offers a development token (role `anon`, 24 h),
//! the same one the server prints at start-up.

use super::resp::Resp;
use super::shard::{now_unix, ShardState};
use crate::realtime::auth;

const INDEX_HTML: &str = include_str!("inspector/index.html");
const APP_JS: &str = include_str!("inspector/app.js");
const APP_CSS: &str = include_str!("inspector/app.css");
const STATUS_HTML: &str = include_str!("inspector/status.html");
const STATUS_JS: &str = include_str!("inspector/status.js");

/// The inspector's answer to `GET path`, `None` when the path is not its
/// own or the inspector is off.
pub fn route(state: &ShardState, method: &str, path: &str) -> Option<Resp> {
    if method != "GET" || !state.config.inspector_enabled {
        return None;
    }
    let (content_type, body) = match path {
        "/" | "/inspector" => ("text/html; charset=utf-8", INDEX_HTML.to_owned()),
        "/inspector/app.js" => ("text/javascript; charset=utf-8", APP_JS.to_owned()),
        "/status" => ("text/html; charset=utf-8", STATUS_HTML.to_owned()),
        "/inspector/status.js" => ("text/javascript; charset=utf-8", STATUS_JS.to_owned()),
        "/inspector/app.css" => ("text/css; charset=utf-8", APP_CSS.to_owned()),
        "/inspector/config.json" => ("application/json", page_config(state)),
        _ => return None,
    };
    Some(Resp {
        status: 200,
        content_type: Some(content_type),
        headers: vec![("cache-control", "no-store".into())],
        body: body.into_bytes(),
    })
}

/// What the page is told: the default tenant, and the development token
/// only when the public development secret is in use.
fn page_config(state: &ShardState) -> String {
    let config = &state.config;
    let dev_token = config.uses_dev_jwt_secret().then(|| {
        auth::sign_hs256(
            &config.api_jwt_secret,
            &serde_json::json!({
                "role": "anon",
                "iss": "realtime",
                "exp": now_unix() + 3600 * 24,
            }),
        )
    });
    serde_json::json!({
        "default_tenant": config.self_host_tenant_name,
        "dev_token": dev_token,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_only_to_its_own_files() {
        for text in [INDEX_HTML, APP_JS, APP_CSS, STATUS_HTML, STATUS_JS] {
            assert!(!text.contains("http://"), "an absolute http URL");
            assert!(!text.contains("https://"), "an absolute https URL");
        }
        assert!(INDEX_HTML.contains("/inspector/app.js"));
        assert!(INDEX_HTML.contains("/inspector/app.css"));
    }
}
