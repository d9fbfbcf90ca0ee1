//! The inspector page and its files are served at `/` and `/inspector`,
//! the status page at `/status`
//! (the page's behaviour in a browser is the `inspector` client suite);
//! its settings offer a development token only on the public development
//! secret; `INSPECTOR_ENABLED=false` leaves every path to the catch-all 404.

mod support;
use support::*;

const DEV_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";
const FILES: [(&str, &str); 7] = [
    ("/", "text/html"),
    ("/inspector", "text/html"),
    ("/inspector/app.js", "text/javascript"),
    ("/inspector/app.css", "text/css"),
    ("/inspector/config.json", "application/json"),
    ("/status", "text/html"),
    ("/inspector/status.js", "text/javascript"),
];

fn config_json(srv: &Server) -> serde_json::Value {
    let (status, _, body) = srv.http("GET", "/inspector/config.json", &[], b"");
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("config.json is JSON")
}

#[test]
fn served_with_their_types_and_no_secret() {
    let srv = Server::start(&[]);
    for (path, ct) in FILES {
        let (status, head, body) = srv.http("GET", path, &[], b"");
        assert_eq!(status, 200, "GET {path}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {ct}")),
            "GET {path}: {head}"
        );
        let text = String::from_utf8(body).expect("utf-8");
        assert!(!text.contains(SECRET), "GET {path} shows the secret");
    }
    let (_, _, page) = srv.http("GET", "/", &[], b"");
    assert!(String::from_utf8_lossy(&page).contains("/inspector/app.js"));
    // Another secret than the public development one: no token offered.
    let cfg = config_json(&srv);
    assert_eq!(cfg["default_tenant"], "realtime-dev");
    assert!(cfg["dev_token"].is_null(), "{cfg}");
    let (status, _, _) = srv.http("POST", "/inspector", &[], b"");
    assert_eq!(status, 404, "only GET is served");
}

#[test]
fn the_development_secret_offers_a_token_that_connects() {
    let srv = Server::start(&[("API_JWT_SECRET", DEV_SECRET)]);
    let cfg = config_json(&srv);
    let token = cfg["dev_token"].as_str().expect("a development token");
    let mut ws = Ws::connect(srv.port, "2.0.0", token);
    let reply = ws.join_v2("1", "realtime:inspector-dev", serde_json::json!({}));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

#[test]
fn disabled_every_path_is_the_catch_all_404() {
    let srv = Server::start(&[("INSPECTOR_ENABLED", "false")]);
    for (path, _) in FILES {
        let (status, _, body) = srv.http("GET", path, &[], b"");
        assert_eq!(status, 404, "GET {path}");
        assert_eq!(body, br#"{"message":"not found"}"#, "GET {path}");
    }
}
