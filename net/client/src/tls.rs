//! TLS (rustls, ring provider) for both front ends: the configuration, the rustls
//! client config built from it, and the blocking stream that is either plain TCP or
//! TLS over TCP.
//!
//! A TLS server speaks TLS from the first byte on its native port; the native
//! protocol (HELLO, AUTH, requests) then runs inside the TLS stream unchanged.
//! Server certificates are always verified, against the CA (or server) certificates
//! in [`TlsConfig::ca_pem`] only: the system and web trust stores are never used.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};

use crate::error::{Error, Result};

/// How to secure connections with TLS: which certificates to trust and which name to
/// verify. Set it with [`Config::tls`](crate::Config::tls).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM of the certificates to trust: the CA that signed the servers' certificates,
    /// or the servers' (self-signed) certificates themselves. One or more
    /// `-----BEGIN CERTIFICATE-----` blocks; anything else in the text is ignored.
    pub ca_pem: Vec<u8>,
    /// The name the server's certificate must be valid for (also sent as SNI): a DNS
    /// name or an IP address. `None`: the host part of the address being connected
    /// to (`db1` for `db1:7700`, `::1` for `[::1]:7700`).
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Trusts the certificates in `pem` (PEM text). Checked when a client is built or
    /// connects, which then fail with [`Error::Tls`].
    pub fn from_ca_pem(pem: impl Into<Vec<u8>>) -> TlsConfig {
        TlsConfig {
            ca_pem: pem.into(),
            server_name: None,
        }
    }

    /// Trusts the certificates in the PEM file at `path`, read now. Fails with
    /// [`Error::Tls`] if the file cannot be read or holds no valid certificate.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<TlsConfig> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| Error::Tls(format!("reading CA file {}: {e}", path.display())))?;
        let tls = TlsConfig::from_ca_pem(pem);
        roots(&tls.ca_pem).map_err(|e| Error::Tls(format!("CA file {}: {e}", path.display())))?;
        Ok(tls)
    }

    /// Verifies the server's certificate against `name` instead of the host part of
    /// the address.
    pub fn server_name(mut self, name: impl Into<String>) -> TlsConfig {
        self.server_name = Some(name.into());
        self
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// The trust store made of every certificate in `pem`; at least one is required.
fn roots(pem: &[u8]) -> std::result::Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("unusable certificate: {e}"))?;
    }
    if store.is_empty() {
        return Err("no certificate in the CA PEM".into());
    }
    Ok(store)
}

/// The rustls client configuration for `tls`, on the ring provider (no process-wide
/// default provider is needed). Built once per `Client`, or per
/// `Connection::connect`.
pub(crate) fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>> {
    let roots = roots(&tls.ca_pem).map_err(Error::Tls)?;
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The rustls client config to use for `cfg`'s connections, if TLS is configured.
pub(crate) fn connector(cfg: &crate::Config) -> Result<Option<Arc<ClientConfig>>> {
    cfg.tls.as_ref().map(client_config).transpose()
}

/// The rustls config and TLS settings for `cfg`'s connections, if TLS is configured:
/// `built` if given (a `Client` builds it once), else built now. Never `None` when
/// `cfg.tls` is set, so a TLS config cannot silently fall back to plain TCP.
pub(crate) fn resolve<'a>(
    cfg: &'a crate::Config,
    built: Option<&Arc<ClientConfig>>,
) -> Result<Option<(Arc<ClientConfig>, &'a TlsConfig)>> {
    let Some(t) = &cfg.tls else { return Ok(None) };
    let config = match built {
        Some(c) => Arc::clone(c),
        None => client_config(t)?,
    };
    Ok(Some((config, t)))
}

/// The name to verify for a connection to `addr` (`host:port`).
pub(crate) fn server_name(tls: &TlsConfig, addr: &str) -> Result<ServerName<'static>> {
    let name = match &tls.server_name {
        Some(n) => n.as_str(),
        None => host_of(addr),
    };
    ServerName::try_from(name.to_owned())
        .map_err(|_| Error::Tls(format!("{name:?} is not a valid DNS name or IP address")))
}

/// `db1:7700` -> `db1`, `[::1]:7700` -> `::1`; a bare IPv6 address stays whole.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match addr.split_once(':') {
        Some((h, port)) if !port.contains(':') => h,
        _ => addr,
    }
}

/// Whether a TLS connection is idle and still open, without blocking: reads and
/// processes whatever TLS records have arrived (`read_nonblocking` must return
/// `WouldBlock` when no bytes are waiting), then checks that they left no plaintext
/// and no close. Records such as TLS 1.3 session tickets arrive unasked after the
/// handshake and are fine; application data or a close (alert or EOF) is not.
pub(crate) fn is_idle(conn: &mut ClientConnection, read_nonblocking: &mut dyn Read) -> bool {
    loop {
        match conn.read_tls(read_nonblocking) {
            Ok(0) => return false,
            Ok(_) => {
                if conn.process_new_packets().is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let mut b = [0u8; 1];
    matches!(conn.reader().read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// The blocking transport: plain TCP, or TLS over TCP. Timeouts are set on the TCP
/// socket either way.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Wraps `tcp` in TLS and completes the handshake, each socket read or write
    /// bounded by the time left before `deadline`.
    pub(crate) fn tls(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        remaining: impl Fn() -> Result<Duration>,
    ) -> Result<Stream> {
        let conn = ClientConnection::new(config, name).map_err(|e| Error::Tls(e.to_string()))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            let left = remaining()?;
            s.sock.set_read_timeout(Some(left))?;
            s.sock.set_write_timeout(Some(left))?;
            match s.conn.complete_io(&mut s.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::blocking::io_error(e)),
            }
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// See `blocking::Connection::is_reusable`. Plain: peeks one byte. TLS: reads and
    /// processes the TLS records that have arrived (see [`is_idle`]), so a session
    /// ticket does not count as unasked data.
    pub(crate) fn is_idle(&mut self) -> bool {
        if self.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let idle = match self {
            Stream::Plain(s) => {
                let mut b = [0u8; 1];
                matches!(s.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => {
                let StreamOwned { conn, sock } = &mut **s;
                is_idle(conn, sock)
            }
        };
        self.tcp().set_nonblocking(false).is_ok() && idle
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, tcp) = match self {
            Stream::Plain(s) => ("Plain", s),
            Stream::Tls(s) => ("Tls", &s.sock),
        };
        f.debug_tuple(kind).field(tcp).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_part_of_addresses() {
        assert_eq!(host_of("db1:7700"), "db1");
        assert_eq!(host_of("127.0.0.1:7700"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7700"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("db1"), "db1");
    }

    #[test]
    fn server_names() {
        let tls = TlsConfig::from_ca_pem(Vec::new());
        assert!(matches!(
            server_name(&tls, "127.0.0.1:1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(&tls, "[::1]:1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(&tls, "db.example:1").unwrap(),
            ServerName::DnsName(_)
        ));
        let named = tls.server_name("bad name!");
        assert!(matches!(server_name(&named, "h:1"), Err(Error::Tls(_))));
    }

    #[test]
    fn bad_pem_is_a_tls_error() {
        let garbage = TlsConfig::from_ca_pem(b"not a certificate".to_vec());
        assert!(matches!(client_config(&garbage), Err(Error::Tls(_))));
        let broken = TlsConfig::from_ca_pem(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        );
        assert!(matches!(client_config(&broken), Err(Error::Tls(_))));
        assert!(matches!(
            TlsConfig::from_ca_file("/nonexistent/ca.pem"),
            Err(Error::Tls(_))
        ));
    }

    #[test]
    fn debug_is_short() {
        let tls = TlsConfig::from_ca_pem(vec![b'x'; 5000]);
        assert!(format!("{tls:?}").contains("<5000 bytes>"));
    }
}
