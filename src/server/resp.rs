//! A REST response before it is written: status, type, extra headers and
//! body. A leaf shared by the REST routes (`http_api`) and the admin API.

/// A response ready to write.
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if there is a body to type.
    pub content_type: Option<&'static str>,
    /// Further headers (rate-limit figures, `location`, CORS).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Resp {
    /// A JSON body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type: Some("application/json"),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `{"message": ...}`, the shape of most REST errors.
    pub fn message(status: u16, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({ "message": message }).to_string(),
        )
    }

    /// No body.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}
