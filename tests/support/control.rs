//! A control database of a test's own, and the admin API client.

use serde_json::{json, Value};

use super::pg::{dev_db_url, parts, psql, psql_bin};
use super::{sign_hs256, Frame, Server, Ws, SECRET};

/// The admin API's secret in these tests (the server's `API_JWT_SECRET`).
pub const ADMIN: &str = SECRET;

/// A database of its own on the dev cluster, dropped at the end.
pub struct ControlDb {
    admin_url: String,
    name: String,
}

impl ControlDb {
    pub fn create(tag: &str) -> Self {
        let admin_url = dev_db_url();
        let name = format!("rt_ctl_{}_{tag}", std::process::id());
        psql(
            &admin_url,
            &format!("drop database if exists {name} with (force)"),
        );
        psql(&admin_url, &format!("create database {name}"));
        Self { admin_url, name }
    }

    pub fn url(&self) -> String {
        let (base, _) = self.admin_url.rsplit_once('/').unwrap();
        format!("{base}/{}", self.name)
    }

    /// Server environment with this database as the control database.
    pub fn env(&self) -> Vec<(String, String)> {
        let (host, port, pw) = parts(&self.admin_url);
        [
            ("CONTROL_DB", "true".to_owned()),
            ("DB_HOST", host),
            ("DB_PORT", port),
            ("DB_NAME", self.name.clone()),
            ("DB_USER", "postgres".into()),
            ("DB_PASSWORD", pw),
            ("DB_ENC_KEY", "0123456789abcdef".into()),
            ("SHARDS", super::test_shards()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for ControlDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new(psql_bin())
            .args([
                self.admin_url.as_str(),
                "-qAt",
                "-c",
                &format!("drop database if exists {} with (force)", self.name),
            ])
            .output();
    }
}

pub fn admin_token() -> String {
    sign_hs256(
        ADMIN,
        &json!({"role": "service_role", "iat": 1_700_000_000}),
    )
}

/// An admin request; returns (status, head, body as JSON or Null).
pub fn admin(srv: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, String, Value) {
    let auth = format!("Bearer {}", admin_token());
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, head, bytes) = srv.http(
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, head, v)
}

pub fn tenant_body(id: &str, secret: &str) -> Value {
    json!({"tenant": {"name": id, "external_id": id, "jwt_secret": secret}})
}

pub fn client_token(secret: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    sign_hs256(secret, &json!({"role": "anon", "exp": exp}))
}

/// A vsn 2.0.0 socket to tenant `id` (Host `<id>.localhost`) with an
/// `anon` token signed with `secret`.
pub fn connect(srv: &Server, id: &str, secret: &str) -> Result<Ws, (u16, String)> {
    let path = format!(
        "/socket/websocket?apikey={}&vsn=2.0.0",
        client_token(secret)
    );
    Ws::try_connect(srv.port, &path, &format!("{id}.localhost"), &[])
}

/// Sends a broadcast with an empty payload on a joined vsn 2.0.0 channel.
pub fn send_event(ws: &mut Ws, topic: &str, event: &str) {
    ws.text(
        &json!(["1", "9", topic, "broadcast", {"type": "broadcast", "event": event, "payload": {}}])
            .to_string(),
    );
}

/// The next broadcast's event name (for sockets that receive nothing else
/// after their join replies).
pub fn next_event(ws: &mut Ws) -> String {
    let m = ws.recv_json();
    assert_eq!(m[3], "broadcast", "{m}");
    m[4]["event"].as_str().unwrap().to_owned()
}

/// The tenant disconnect on a socket joined to `topic`: the system
/// message on the channel, then 1012.
pub fn expect_disconnect(ws: &mut Ws, topic: &str) {
    let m = ws.recv_json();
    assert_eq!(
        m,
        json!([null, null, topic, "system", {"extension": "system", "status": "ok", "message": "Server requested disconnect"}])
    );
    match ws.expect_frame() {
        Frame::Close(code) => assert_eq!(code, Some(1012)),
        other => panic!("expected a close frame, got {other:?}"),
    }
}
