//! Secrets at rest in the control database: a tenant's `jwt_secret` and
//! its extension's `db_*` settings are stored encrypted, in the same two
//! forms the Elixir server writes, so a control database written by either
//! server is read by the other.
//!
//! - **Legacy**: AES-128-ECB under `DB_ENC_KEY` (its 16 bytes as given),
//!   PKCS#7 padding, stored as bare standard base64.
//! - **GCM**: AES-256-GCM under `DB_ENC_KEY_GCM` (its 32 bytes as given), a
//!   random 96-bit nonce, no associated data, stored as `g1:` followed by
//!   the base64 of nonce (12 bytes), tag (16 bytes) and ciphertext, in that
//!   order.
//!
//! `:` is not a base64 character, so a stored value says which cipher made
//! it: reads dispatch on the prefix, writes use GCM when `DB_ENC_WRITE_GCM`
//! asks for it and a GCM key is configured (else legacy, as the Elixir
//! server falls back). ECB leaks equal blocks; it is kept only to read and
//! write what existing deployments hold. Runtime-free: the caller supplies
//! the nonce.

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Block};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Prefix of AES-256-GCM values.
pub const GCM_PREFIX: &str = "g1:";

/// Why a value could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `DB_ENC_KEY` is not 16 bytes.
    #[error("must be exactly 16 bytes (AES-128-ECB key), got {0}")]
    EcbKeySize(usize),
    /// `DB_ENC_KEY_GCM` is not 32 bytes.
    #[error("must be exactly 32 bytes (AES-256-GCM key), got {0}")]
    GcmKeySize(usize),
    /// A legacy value met a server without `DB_ENC_KEY`.
    #[error("a value encrypted with AES-128-ECB needs DB_ENC_KEY")]
    NoEcbKey,
    /// A `g1:` value met a server without `DB_ENC_KEY_GCM`.
    #[error("a value encrypted with AES-256-GCM needs DB_ENC_KEY_GCM")]
    NoGcmKey,
    /// Not base64, a length that is no whole number of blocks, or bad
    /// padding: not a value this key wrote.
    #[error("the stored value is not a valid ciphertext")]
    Malformed,
    /// The GCM tag does not match: wrong key or altered value.
    #[error("the stored value fails GCM authentication (another DB_ENC_KEY_GCM, or altered)")]
    Authentication,
}

/// The keys of a deployment and which cipher new values use.
#[derive(Clone)]
pub struct SecretKeys {
    ecb: Option<Aes128>,
    gcm: Option<Aes256Gcm>,
    write_gcm: bool,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("ecb", &self.ecb.is_some())
            .field("gcm", &self.gcm.is_some())
            .field("write_gcm", &self.write_gcm)
            .finish()
    }
}

impl SecretKeys {
    /// From `DB_ENC_KEY`, `DB_ENC_KEY_GCM` and `DB_ENC_WRITE_GCM`; each key,
    /// when given, must have its cipher's exact length in bytes.
    pub fn new(
        ecb_key: Option<&str>,
        gcm_key: Option<&str>,
        write_gcm: bool,
    ) -> Result<SecretKeys, SecretError> {
        let ecb = match ecb_key.map(str::as_bytes) {
            Some(k) => {
                Some(Aes128::new_from_slice(k).map_err(|_| SecretError::EcbKeySize(k.len()))?)
            }
            None => None,
        };
        let gcm = match gcm_key.map(str::as_bytes) {
            Some(k) => {
                Some(Aes256Gcm::new_from_slice(k).map_err(|_| SecretError::GcmKeySize(k.len()))?)
            }
            None => None,
        };
        Ok(SecretKeys {
            ecb,
            gcm,
            write_gcm,
        })
    }

    /// Whether new values are written with AES-256-GCM: asked for and a
    /// GCM key configured. Asked for without a key falls back to ECB (the
    /// server warns about it once at start).
    pub fn writes_gcm(&self) -> bool {
        self.write_gcm && self.gcm.is_some()
    }

    /// GCM writes were asked for but no GCM key is configured.
    pub fn gcm_requested_without_key(&self) -> bool {
        self.write_gcm && self.gcm.is_none()
    }

    /// `text` encrypted with the write cipher; `nonce` is used by GCM only
    /// and must be fresh random bytes for every value.
    pub fn encrypt(&self, text: &[u8], nonce: [u8; 12]) -> Result<String, SecretError> {
        match (&self.gcm, self.write_gcm) {
            (Some(gcm), true) => Ok(gcm_encrypt(gcm, text, nonce)),
            _ => Ok(ecb_encrypt(
                self.ecb.as_ref().ok_or(SecretError::NoEcbKey)?,
                text,
            )),
        }
    }

    /// The text of a stored value, whichever cipher wrote it.
    pub fn decrypt(&self, stored: &str) -> Result<Vec<u8>, SecretError> {
        match stored.strip_prefix(GCM_PREFIX) {
            Some(b64) => gcm_decrypt(self.gcm.as_ref().ok_or(SecretError::NoGcmKey)?, b64),
            None => ecb_decrypt(self.ecb.as_ref().ok_or(SecretError::NoEcbKey)?, stored),
        }
    }
}

/// Whether a stored value was written with AES-256-GCM.
pub fn is_gcm(stored: &str) -> bool {
    stored.starts_with(GCM_PREFIX)
}

fn ecb_encrypt(key: &Aes128, text: &[u8]) -> String {
    // PKCS#7: 1 to 16 bytes, each holding the count.
    let pad = 16 - text.len() % 16;
    let mut data = Vec::with_capacity(text.len() + pad);
    data.extend_from_slice(text);
    data.resize(text.len() + pad, pad as u8);
    for block in data.chunks_exact_mut(16) {
        key.encrypt_block(<&mut Block>::try_from(block).expect("16-byte chunks"));
    }
    STANDARD.encode(&data)
}

fn ecb_decrypt(key: &Aes128, b64: &str) -> Result<Vec<u8>, SecretError> {
    let mut data = STANDARD.decode(b64).map_err(|_| SecretError::Malformed)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(SecretError::Malformed);
    }
    for block in data.chunks_exact_mut(16) {
        key.decrypt_block(<&mut Block>::try_from(block).expect("16-byte chunks"));
    }
    let pad = usize::from(*data.last().ok_or(SecretError::Malformed)?);
    let body = data.len().checked_sub(pad).ok_or(SecretError::Malformed)?;
    if pad == 0 || pad > 16 || data[body..].iter().any(|&b| usize::from(b) != pad) {
        return Err(SecretError::Malformed);
    }
    data.truncate(body);
    Ok(data)
}

fn gcm_encrypt(key: &Aes256Gcm, text: &[u8], nonce: [u8; 12]) -> String {
    let payload = Payload {
        msg: text,
        aad: b"",
    };
    // Encryption only fails for texts beyond GCM's 64 GiB bound.
    let sealed = key
        .encrypt(&Nonce::from(nonce), payload)
        .expect("a secret fits one GCM message");
    // The crate appends the tag; the stored layout puts it before the
    // ciphertext.
    let (ciphertext, tag) = sealed.split_at(sealed.len() - 16);
    let mut raw = Vec::with_capacity(12 + sealed.len());
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(tag);
    raw.extend_from_slice(ciphertext);
    format!("{GCM_PREFIX}{}", STANDARD.encode(&raw))
}

fn gcm_decrypt(key: &Aes256Gcm, b64: &str) -> Result<Vec<u8>, SecretError> {
    let raw = STANDARD.decode(b64).map_err(|_| SecretError::Malformed)?;
    if raw.len() < 12 + 16 {
        return Err(SecretError::Malformed);
    }
    let (nonce, rest) = raw.split_at(12);
    let (tag, ciphertext) = rest.split_at(16);
    let mut sealed = Vec::with_capacity(rest.len());
    sealed.extend_from_slice(ciphertext);
    sealed.extend_from_slice(tag);
    let payload = Payload {
        msg: &sealed,
        aad: b"",
    };
    let nonce = Nonce::try_from(nonce).map_err(|_| SecretError::Malformed)?;
    key.decrypt(&nonce, payload)
        .map_err(|_| SecretError::Authentication)
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
