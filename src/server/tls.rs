//! TLS to a tenant database: Postgres' `SSLRequest` negotiation, then
//! rustls (ring provider) over the glommio socket via `futures-rustls`,
//! which drives rustls over any futures-io stream, as glommio's are.
//!
//! Modes (`DB_SSL_MODE`, libpq's names):
//! - `disable`: plain TCP.
//! - `prefer` (default): TLS when the server offers it, plain when it
//!   answers `N` or the handshake fails (dialling again, as libpq does);
//!   the certificate is not verified.
//! - `require`: TLS or fail; the certificate is not verified. This is what
//!   the Elixir server does for a tenant with `ssl_enforced` (`verify_none`).
//! - `verify-full`: TLS, certificate chain checked against
//!   `DB_SSL_ROOT_CERT` (a PEM bundle) or else the webpki (Mozilla) roots,
//!   and the certificate must name `DB_HOST`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::pgerror::PgError;

pub use crate::config::SslMode;

/// TLS settings of one database connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbTls {
    /// The mode.
    pub mode: SslMode,
    /// PEM file of trusted roots for `verify-full` (None: webpki roots).
    pub root_cert: Option<String>,
}

/// The socket of a database connection, plain or TLS.
pub enum PgStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the rustls state is large).
    Tls(Box<TlsStream<ReadAhead<TcpStream>>>),
}

impl PgStream {
    /// Reads some bytes (0 at EOF). Cancel-safe as the socket read is:
    /// bytes are taken from the socket or from rustls only on completion.
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            PgStream::Plain(s) => s.read(buf).await,
            PgStream::Tls(s) => s.read(buf).await,
        }
    }

    /// Writes all of `buf` and pushes it onto the wire.
    pub async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            PgStream::Plain(s) => s.write_all(buf).await,
            PgStream::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, PgStream::Tls(_))
    }
}

/// Bytes read from the socket at once under rustls.
const READ_AHEAD: usize = 64 * 1024;

/// A socket read through a buffer of [`READ_AHEAD`] bytes. rustls asks its
/// transport for at most 4 KiB per read, so a busy replication stream over
/// TLS would cost one `recv` per 4 KiB; through this, one per 64 KiB when
/// the socket holds that much. Writes pass straight through. Cancel-safe:
/// what a completed read took from the socket stays in the buffer.
pub struct ReadAhead<S> {
    /// The socket.
    inner: S,
    /// Bytes read and not yet handed out are `buf[pos..end]`.
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buf: vec![0; READ_AHEAD].into_boxed_slice(),
            pos: 0,
            end: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pos == this.end {
            if out.len() >= this.buf.len() {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            let n = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut this.buf))?;
            this.pos = 0;
            this.end = n.min(this.buf.len());
        }
        let n = out.len().min(this.end - this.pos);
        out[..n].copy_from_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// `SSLRequest`: length 8, code 1234.5679.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Dials `addr` and negotiates TLS as `tls` asks. Like libpq, `prefer`
/// dials again in plain text when the server offers TLS but the handshake
/// fails.
pub async fn open(
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
    host: &str,
    tls: &DbTls,
) -> Result<PgStream, PgError> {
    match negotiate(dial(addr, timeout).await?, host, tls).await {
        Err(PgError::Tls(e)) if tls.mode == SslMode::Prefer => {
            tracing::warn!(host, error = %e, "TLS failed with DB_SSL_MODE=prefer; connecting without TLS");
            Ok(PgStream::Plain(dial(addr, timeout).await?))
        }
        r => r,
    }
}

async fn dial(
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<TcpStream, PgError> {
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(|e| PgError::Io(std::io::Error::other(e.to_string())))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Negotiates TLS on a fresh connection to `host` as `tls` asks.
pub async fn negotiate(
    mut stream: TcpStream,
    host: &str,
    tls: &DbTls,
) -> Result<PgStream, PgError> {
    if tls.mode == SslMode::Disable {
        return Ok(PgStream::Plain(stream));
    }
    // Build the client first: a bad root file fails before any traffic.
    let config = client_config(tls)?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| PgError::Tls(format!("`{host}` is not a valid TLS server name: {e}")))?;
    stream.write_all(&SSL_REQUEST).await?;
    // Exactly one byte: anything the server sent after it would be
    // unencrypted data injected ahead of the handshake.
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {}
        b'N' if tls.mode == SslMode::Prefer => return Ok(PgStream::Plain(stream)),
        b'N' => {
            return Err(PgError::Tls(format!(
                "the database server does not accept TLS connections, and DB_SSL_MODE={} \
                 requires TLS (enable ssl on the server, or use prefer/disable)",
                tls.mode
            )))
        }
        b => {
            return Err(PgError::Protocol(format!(
                "unexpected answer {:?} to SSLRequest",
                b as char
            )))
        }
    }
    let connector = futures_rustls::TlsConnector::from(Arc::new(config));
    let s = connector
        .connect(name, ReadAhead::new(stream))
        .await
        .map_err(|e| PgError::Tls(format!("handshake with {host} failed: {e}")))?;
    Ok(PgStream::Tls(Box::new(s)))
}

fn client_config(tls: &DbTls) -> Result<ClientConfig, PgError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?;
    let config = match tls.mode {
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match &tls.root_cert {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| {
                            PgError::Tls(format!("cannot read DB_SSL_ROOT_CERT {path}: {e}"))
                        })?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(PgError::Tls(format!(
                            "DB_SSL_ROOT_CERT {path} holds no usable certificate"
                        )));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts any certificate (`prefer`, `require`), but still checks that the
/// handshake is signed by the key of the certificate presented.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_hands_out_every_byte_once_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut r = ReadAhead::new(futures_lite::io::Cursor::new(data.clone()));
        let mut got = Vec::new();
        // Small reads (served from the buffer), a large one (straight
        // through when the buffer is empty), until EOF.
        let sizes = [1usize, 4096, 100, 70_000, 3, 16_384];
        futures_lite::future::block_on(async {
            for k in 0.. {
                let mut chunk = vec![0u8; sizes[k % sizes.len()]];
                let n = r.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
        });
        assert_eq!(got, data);
    }

    #[test]
    fn the_ssl_request_carries_its_magic_code() {
        assert_eq!(
            u32::from_be_bytes(SSL_REQUEST[4..].try_into().unwrap()),
            80877103
        );
    }

    #[test]
    fn a_missing_root_file_is_a_clear_error() {
        let e = client_config(&DbTls {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("DB_SSL_ROOT_CERT /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
