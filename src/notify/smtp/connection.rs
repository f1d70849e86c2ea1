//! One SMTP connection to the alert relay: TCP, TLS (implicit or STARTTLS) with slawatch's own
//! trust ([`crate::tls`]), then lettre's SMTP conversation (EHLO, AUTH, MAIL, DATA).
//!
//! lettre builds its TLS from a fixed set of options, none of which can pin a certificate or say
//! which setting fixes a refused one, so the stream is secured here and handed to lettre as a
//! ready transport. For STARTTLS this module speaks the plain-text part itself (greeting, EHLO,
//! STARTTLS, RFC 3207) and gives lettre the server's greeting again in front of the encrypted
//! stream: lettre reads a greeting first, and sends EHLO again over TLS as the RFC requires.
//! Bytes the server sends after its STARTTLS answer and before TLS would be a command injection
//! (CVE-2011-0411 class) and are refused.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{SmtpSecurity, SmtpSettings};

/// Where the settings live, for error texts.
const SETTING: &str = "notify.smtp";

/// Longest SMTP reply read before TLS (a greeting or EHLO answer is a few hundred bytes).
const MAX_REPLY: usize = 16 * 1024;

/// How this client logs in, if at all.
#[derive(Clone)]
pub enum Login {
    None,
    Password(Credentials),
    /// AUTH XOAUTH2 as this user with a token from the source.
    OAuth2 {
        user: String,
        tokens: Arc<crate::oauth2::TokenSource>,
    },
}

/// Opens authenticated connections to the configured relay.
pub struct Connector {
    /// The name the certificate must carry (and the one in error texts).
    host: String,
    /// What is dialled: the host, or for plain SMTP the loopback address it resolved to.
    address: String,
    port: u16,
    security: SmtpSecurity,
    tls: TlsConnector,
    hello: ClientId,
}

impl Connector {
    /// `address` is what to dial (see the field).
    pub fn new(s: &SmtpSettings, address: String) -> Result<Connector, crate::tls::TlsError> {
        let config = crate::tls::client_config(&s.tls)?;
        Ok(Connector {
            host: s.host.clone(),
            address,
            port: s.port,
            security: s.security,
            tls: TlsConnector::from(Arc::new(config)),
            hello: ClientId::default(),
        })
    }

    /// Connects, secures the stream, reads the greeting, says EHLO and logs in. Not bounded in
    /// time by itself: the caller bounds the whole conversation.
    pub async fn connect(&self, login: &Login) -> Result<AsyncSmtpConnection, String> {
        let tcp = TcpStream::connect((self.address.as_str(), self.port))
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to the SMTP server {}:{}: {e}",
                    self.address, self.port
                )
            })?;
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
        let stream = match self.security {
            SmtpSecurity::Plain => SmtpStream::new(Inner::Plain(tcp), Vec::new(), peer),
            SmtpSecurity::Tls => SmtpStream::new(
                Inner::Tls(Box::new(self.handshake(tcp).await?)),
                Vec::new(),
                peer,
            ),
            SmtpSecurity::Starttls => {
                let (tcp, greeting) = self.starttls(tcp).await?;
                let tls = self.handshake(tcp).await?;
                SmtpStream::new(Inner::Tls(Box::new(tls)), greeting, peer)
            }
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
            .await
            .map_err(|e| super::describe(&e))?;
        match login {
            Login::None => {}
            Login::Password(credentials) => {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|e| super::describe(&e))?;
            }
            Login::OAuth2 { user, tokens } => {
                let token = tokens.token().await.map_err(|e| e.to_string())?;
                let credentials = Credentials::new(user.clone(), token.secret.expose().to_string());
                if let Err(e) = conn.auth(&[Mechanism::Xoauth2], &credentials).await {
                    // Refused: the next attempt asks for a new token.
                    tokens.invalidate().await;
                    return Err(super::describe(&e));
                }
            }
        }
        Ok(conn)
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| format!("{SETTING}.host `{}` is not a server name: {e}", self.host))?;
        self.tls.connect(name, tcp).await.map_err(|e| {
            format!(
                "TLS with the SMTP server {} failed: {}",
                self.host,
                crate::tls::describe(&e, SETTING)
            )
        })
    }

    /// The plain-text start of a STARTTLS session; returns the stream, ready for the TLS
    /// handshake, and the server's greeting.
    async fn starttls(&self, mut tcp: TcpStream) -> Result<(TcpStream, Vec<u8>), String> {
        let greeting = read_reply(&mut tcp, "220").await?;
        let ehlo = format!("EHLO {}\r\n", self.hello);
        tcp.write_all(ehlo.as_bytes())
            .await
            .map_err(|e| format!("sending EHLO: {e}"))?;
        let capabilities = read_reply(&mut tcp, "250").await?;
        let offers = String::from_utf8_lossy(&capabilities).lines().any(|l| {
            l.get(4..)
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("STARTTLS"))
        });
        if !offers {
            return Err(format!(
                "the SMTP server {} does not offer STARTTLS: set {SETTING}.security = \"tls\" if it speaks implicit TLS (usually port 465)",
                self.host
            ));
        }
        tcp.write_all(b"STARTTLS\r\n")
            .await
            .map_err(|e| format!("sending STARTTLS: {e}"))?;
        read_reply(&mut tcp, "220").await?;
        Ok((tcp, greeting))
    }
}

/// Reads one complete (possibly multi-line) SMTP reply and checks its code. Nothing may follow
/// it: before TLS the server speaks only when spoken to.
async fn read_reply(tcp: &mut TcpStream, code: &str) -> Result<Vec<u8>, String> {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the SMTP server's reply: {e}"))?;
        if n == 0 {
            return Err("the SMTP server closed the connection before TLS".into());
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > MAX_REPLY {
            return Err("the SMTP server's reply before TLS is too long".into());
        }
        let text = String::from_utf8_lossy(&reply);
        let Some(body) = text.strip_suffix("\r\n") else {
            continue;
        };
        let last = body.rsplit("\r\n").next().unwrap_or_default();
        if last.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        // One reply: every line but the last is a continuation (`250-…`) of the same code.
        let lines: Vec<&str> = body.split("\r\n").collect();
        let one_reply = lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with(code) && l.as_bytes().get(3) == Some(&b'-'));
        if !last.starts_with(code) || !one_reply {
            return Err(format!(
                "the SMTP server answered `{}` where one {code} reply was expected",
                last.trim()
            ));
        }
        return Ok(reply);
    }
}

#[derive(Debug)]
enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The stream lettre talks over: `replay` (the greeting, after STARTTLS) is read first.
#[derive(Debug)]
struct SmtpStream {
    replay: Vec<u8>,
    replayed: usize,
    inner: Inner,
    peer: SocketAddr,
}

impl SmtpStream {
    fn new(inner: Inner, replay: Vec<u8>, peer: SocketAddr) -> SmtpStream {
        SmtpStream {
            replay,
            replayed: 0,
            inner,
            peer,
        }
    }
}

impl AsyncTokioStream for SmtpStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

impl AsyncRead for SmtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SmtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
