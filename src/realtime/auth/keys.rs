//! The keys a tenant's tokens are verified with; a leaf shared by the
//! verifier and `signer`.

use serde_json::Value;

/// Keys a tenant's tokens are verified with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JwtKeys {
    /// Tenant `jwt_secret`: HMAC key for HS* tokens, used as raw string bytes
    /// (never base64-decoded). `None` when the tenant only has a JWKS.
    pub secret: Option<String>,
    /// Tenant `jwt_jwks`, `{"keys":[...]}`: RSA/EC/OKP keys by `kid`, and `oct`
    /// keys that take precedence over `secret` for HS tokens naming them.
    pub jwks: Option<Value>,
}
