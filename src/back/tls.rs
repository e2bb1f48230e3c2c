//! TLS to Redis (the `ssl` block): the rustls client configuration built from PEM files
//! at start-up, and [`TlsStream`], a rustls client connection over a non-blocking mio
//! `TcpStream` that the back side reads and writes like a plain socket.
//!
//! Certificates are verified: the chain against the configured roots (`ca_cert_bundle`,
//! every certificate file in `path_to_certs`, or the system's store when neither is
//! given) and the name against `redis_sni`, else `redis_host` (a DNS name or an IP
//! address). `client_cert` and `client_key` answer Redis's `tls-auth-clients`.

use crate::config::Ssl;
use mio::net::TcpStream;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every TLS connection to Redis is opened with.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// Why the `ssl` block cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("ssl: no certificate in ca_cert_bundle {0}")]
    NoCaCert(String),
    #[error("ssl: cannot read path_to_certs {dir}: {error}")]
    CertDir { dir: String, error: io::Error },
    #[error("ssl: no certificate found in path_to_certs {0}")]
    NoCertInDir(String),
    #[error("ssl: no ca_cert_bundle or path_to_certs given and no system CA certificates found")]
    NoSystemCerts,
    /// rustls has no protocol version in common with its crypto provider.
    #[error("ssl: {0}")]
    Protocols(rustls::Error),
    #[error("ssl: no certificate in client_cert {0}")]
    NoClientCert(String),
    #[error("ssl: cannot read a private key from client_key {path}: {error}")]
    ClientKey { path: String, error: pem::Error },
    #[error("ssl: client_cert and client_key do not go together: {0}")]
    ClientAuth(rustls::Error),
    #[error("ssl: client_cert and client_key must be given together")]
    ClientHalf,
    #[error("ssl: '{0}' is not a valid server name for TLS")]
    ServerName(String),
    /// A PEM file cannot be opened or read.
    #[error("ssl: cannot read {}: {error}", .path.display())]
    Read { path: PathBuf, error: pem::Error },
    /// A PEM file holds a certificate that cannot be decoded.
    #[error("ssl: cannot read certificates from {}: {error}", .path.display())]
    Certificates { path: PathBuf, error: pem::Error },
    #[error("ssl: bad CA certificate in {from}: {error}")]
    BadCa { from: String, error: rustls::Error },
}

/// Builds the client configuration: reads and checks every file now, so that a missing
/// or unreadable certificate stops the start instead of failing each connection.
pub fn client_config(ssl: &Ssl, redis_host: &str) -> Result<Tls, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    if let Some(file) = &ssl.ca_cert_bundle {
        let certs = read_certs(Path::new(file))?;
        if certs.is_empty() {
            return Err(TlsConfigError::NoCaCert(file.clone()));
        }
        add_roots(&mut roots, certs, file)?;
    }
    if let Some(dir) = &ssl.path_to_certs {
        let entries = std::fs::read_dir(dir).map_err(|error| TlsConfigError::CertDir {
            dir: dir.clone(),
            error,
        })?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths.iter().filter(|p| p.is_file()) {
            // A certificate directory may hold other files (keys, CRLs, READMEs): only
            // what parses as PEM certificates counts.
            if let Ok(certs) = read_certs(p) {
                add_roots(&mut roots, certs, &p.display().to_string())?;
            }
        }
        if roots.is_empty() {
            return Err(TlsConfigError::NoCertInDir(dir.clone()));
        }
    }
    if ssl.ca_cert_bundle.is_none() && ssl.path_to_certs.is_none() {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(TlsConfigError::NoSystemCerts);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Protocols)?
        .with_root_certificates(roots);
    let config = match (&ssl.client_cert, &ssl.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(Path::new(cert))?;
            if chain.is_empty() {
                return Err(TlsConfigError::NoClientCert(cert.clone()));
            }
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|error| TlsConfigError::ClientKey {
                    path: key.clone(),
                    error,
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsConfigError::ClientAuth)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsConfigError::ClientHalf),
    };
    let name = ssl.redis_sni.as_deref().unwrap_or(redis_host);
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| TlsConfigError::ServerName(name.into()))?;
    Ok(Tls {
        config: Arc::new(config),
        server_name,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|error| TlsConfigError::Read {
            path: path.into(),
            error,
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsConfigError::Certificates {
            path: path.into(),
            error,
        })
}

fn add_roots(
    roots: &mut RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    from: &str,
) -> Result<(), TlsConfigError> {
    for c in certs {
        roots.add(c).map_err(|error| TlsConfigError::BadCa {
            from: from.into(),
            error,
        })?;
    }
    Ok(())
}

/// A rustls error as an `io::Error` whose text says it is about TLS.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS error: {e}"))
}

/// A TLS client connection over a non-blocking socket. Reads and writes never block:
/// they return `WouldBlock` like the socket would. A read offers the same guarantee as
/// a plain socket's for edge-triggered polling: it returns less than the room offered
/// only once the socket is drained (or at the end of the stream).
pub struct TlsStream {
    pub sock: TcpStream,
    conn: ClientConnection,
    /// The socket's end of stream was read.
    eof: bool,
}

impl TlsStream {
    pub fn new(sock: TcpStream, tls: &Tls) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(tls_error)?;
        Ok(TlsStream {
            sock,
            conn,
            eof: false,
        })
    }

    /// Whether rustls holds encrypted bytes the socket has not taken yet.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes the encrypted bytes rustls holds. `Ok(true)`: all of them went out;
    /// `Ok(false)`: the socket is full (a writable event will say when to go on).
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads what the socket has into rustls and processes it. `Ok(false)`: the socket
    /// had nothing (`WouldBlock`).
    fn receive(&mut self) -> io::Result<bool> {
        loop {
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // Tell Redis why (an alert), if the socket takes it.
                let _ = self.flush_tls();
                return Err(tls_error(e));
            }
            // Handshake messages and key updates may need an answer.
            self.flush_tls()?;
            return Ok(true);
        }
    }

    /// Drives the TLS handshake. `Ok(true)` once it is complete.
    pub fn handshake(&mut self) -> io::Result<bool> {
        self.flush_tls()?;
        while self.conn.is_handshaking() {
            if self.eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection during the TLS handshake",
                ));
            }
            if !self.receive()? {
                return Ok(false);
            }
        }
        self.flush_tls()?;
        Ok(true)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.conn.reader().read(&mut buf[n..]) {
                // Redis's close_notify: the end of the stream.
                Ok(0) => return Ok(n),
                Ok(m) => {
                    n += m;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The end of the stream without close_notify (Redis killed): it changes
                // nothing for us, Redis's replies are framed.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(n),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(n);
            }
            if !self.receive()? {
                return if n > 0 {
                    Ok(n)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
        }
        Ok(n)
    }
}

impl Write for TlsStream {
    /// Takes plaintext into rustls, which encrypts it, and writes what the socket takes.
    /// rustls holds at most 64 KiB the socket did not take; past that this returns
    /// `WouldBlock`, so the caller's buffer keeps the rest.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush_tls()?;
        let n = self.conn.writer().write(buf)?;
        self.flush_tls()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().map(|_| ())
    }
}
