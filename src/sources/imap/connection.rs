//! One authenticated IMAP connection: TCP, TLS (implicit or STARTTLS), greeting, then LOGIN or
//! SASL `XOAUTH2` / `OAUTHBEARER` with an access token ([`crate::oauth2`]: cached, and dropped
//! when the server refuses it, so the next connection brings a new one).
//!
//! async-imap has no TLS and no timeouts of its own, so this module owns both. The TCP socket is
//! wrapped in a [`TimeoutStream`] whose read and write timeouts are the source's `timeout`: a
//! half-open connection fails the next read instead of hanging forever. TLS sits on top of the
//! timed socket, so STARTTLS can upgrade the same stream. Fixed-size exchanges (greeting,
//! handshake, LOGIN) are also bounded as a whole with [`tokio::time::timeout`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use async_imap::{Client, Session};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::Error;
use crate::config::{ImapAuth, ImapSecurity, ImapSettings};

/// The TCP socket with read/write timeouts, pinned because `TimeoutStream` is `!Unpin`.
type TimedTcp = Pin<Box<TimeoutStream<TcpStream>>>;

/// The byte stream under an IMAP session: plain (loopback) or TLS over the timed socket.
pub enum Transport {
    Plain(TimedTcp),
    Tls(Box<TlsStream<TimedTcp>>),
}

/// The session type the rest of the source works with.
pub type ImapSession = Session<Transport>;

impl Transport {
    fn timed(&mut self) -> Pin<&mut TimeoutStream<TcpStream>> {
        match self {
            Transport::Plain(s) => s.as_mut(),
            Transport::Tls(t) => t.get_mut().0.as_mut(),
        }
    }

    /// Sets the socket read timeout; IDLE turns it off while it waits (the wait has its own
    /// bound) and back on afterwards.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.timed().set_read_timeout_pinned(timeout);
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Plain(_) => f.write_str("Transport::Plain"),
            Transport::Tls(_) => f.write_str("Transport::Tls"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => s.as_mut().poll_read(cx, buf),
            Transport::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => s.as_mut().poll_write(cx, buf),
            Transport::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => s.as_mut().poll_flush(cx),
            Transport::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => s.as_mut().poll_shutdown(cx),
            Transport::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The SASL exchange of `XOAUTH2` / `OAUTHBEARER`: the token first; to an error challenge (a
/// JSON status from the server) the empty response (XOAUTH2) or `%x01` (RFC 7628 §3.2.3), after
/// which the server answers NO.
struct SaslToken {
    first: Option<String>,
    mechanism: crate::oauth2::Mechanism,
}

impl async_imap::Authenticator for SaslToken {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        match (self.first.take(), self.mechanism) {
            (Some(first), _) => first.into_bytes(),
            (None, crate::oauth2::Mechanism::OAuthBearer) => vec![1],
            (None, crate::oauth2::Mechanism::XOAuth2) => Vec::new(),
        }
    }
}

/// Runs `fut` bounded by `limit`, turning expiry into [`Error::Timeout`].
pub async fn bounded<T>(
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            what,
            seconds: limit.as_secs_f64(),
        }),
    }
}

/// Builds authenticated sessions for one source; cheap to clone into every folder task.
#[derive(Clone)]
pub struct Connector {
    settings: Arc<ImapSettings>,
    tls: TlsConnector,
    login: Login,
}

/// How a connection logs in.
#[derive(Clone)]
enum Login {
    Password(crate::config::Secret),
    /// SASL with an access token from `tokens`, shared by every folder's connection.
    OAuth2 {
        mechanism: crate::oauth2::Mechanism,
        tokens: Arc<crate::oauth2::TokenSource>,
    },
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .field("security", &self.settings.security)
            .finish()
    }
}

impl Connector {
    /// Prepares the TLS configuration ([`crate::tls`]: system and webpki roots, `ca_file`,
    /// pinned certificates).
    pub fn new(settings: Arc<ImapSettings>) -> Result<Connector, Error> {
        let config =
            crate::tls::client_config(&settings.tls).map_err(|e| Error::Tls(e.to_string()))?;
        let login = match &settings.auth {
            ImapAuth::OAuth2 { mechanism, oauth2 } => Login::OAuth2 {
                mechanism: *mechanism,
                tokens: crate::oauth2::TokenSource::new(oauth2.clone())
                    .map_err(|e| Error::Token(e.to_string()))?,
            },
            ImapAuth::Password(password) => Login::Password(password.clone()),
        };
        Ok(Connector {
            settings,
            tls: TlsConnector::from(Arc::new(config)),
            login,
        })
    }

    pub fn settings(&self) -> &ImapSettings {
        &self.settings
    }

    /// Connects, secures the stream as configured, reads the greeting and logs in. With an
    /// OAuth2 login, also says when to log in again: when its token is due for renewal, before
    /// it expires (servers such as Exchange Online end a session whose token expired).
    pub async fn connect(&self) -> Result<(ImapSession, Option<Instant>), Error> {
        let s = &*self.settings;
        let timeout = s.timeout;
        let addrs = resolve(&s.host, s.port, timeout).await?;
        if s.security == ImapSecurity::Plain
            && !s.allow_insecure
            && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback())
        {
            return Err(Error::Insecure(a.to_string()));
        }
        let tcp = connect_tcp(&addrs, timeout).await?;
        let mut timed = TimeoutStream::new(tcp);
        timed.set_read_timeout(Some(timeout));
        timed.set_write_timeout(Some(timeout));
        let timed: TimedTcp = Box::pin(timed);

        let client = match s.security {
            ImapSecurity::Tls => {
                let tls = self.handshake(timed).await?;
                let mut client = Client::new(Transport::Tls(Box::new(tls)));
                read_greeting(&mut client, timeout).await?;
                client
            }
            ImapSecurity::Starttls => {
                let mut plain = Client::new(Transport::Plain(timed));
                read_greeting(&mut plain, timeout).await?;
                let caps = bounded("reading CAPABILITY", timeout, capabilities(&mut plain)).await?;
                if !caps.iter().any(|c| c.eq_ignore_ascii_case("STARTTLS")) {
                    return Err(Error::Tls(format!(
                        "{} does not offer STARTTLS: set {}.security = \"tls\" if it speaks implicit TLS (usually port 993)",
                        s.host, s.tls.setting
                    )));
                }
                bounded("starting TLS", timeout, async {
                    plain
                        .run_command_and_check_ok("STARTTLS", None)
                        .await
                        .map_err(|e| Error::from_imap("starting TLS", timeout, e))
                })
                .await?;
                // Anything the server sent after its OK is discarded with the plain stream
                // (RFC 3501 §6.2.1: it must not be trusted).
                let Transport::Plain(timed) = plain.into_inner() else {
                    return Err(Error::Tls("STARTTLS on a TLS stream".into()));
                };
                let tls = self.handshake(timed).await?;
                Client::new(Transport::Tls(Box::new(tls)))
            }
            ImapSecurity::Plain => {
                let mut client = Client::new(Transport::Plain(timed));
                read_greeting(&mut client, timeout).await?;
                client
            }
        };

        let refused = |e: async_imap::error::Error| match e {
            async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m) => Error::Auth(m),
            async_imap::error::Error::Validate(v) => {
                Error::Auth(format!("user name or password not sendable: {v}"))
            }
            other => Error::from_imap("logging in", timeout, other),
        };
        match &self.login {
            Login::OAuth2 { mechanism, tokens } => {
                let token = tokens
                    .token()
                    .await
                    .map_err(|e| Error::Token(e.to_string()))?;
                let sasl = SaslToken {
                    first: Some(crate::oauth2::sasl_response(
                        *mechanism,
                        &s.username,
                        &token.secret,
                        &s.host,
                        s.port,
                    )),
                    mechanism: *mechanism,
                };
                let result = bounded("logging in", timeout, async {
                    client
                        .authenticate(mechanism.sasl_name(), sasl)
                        .await
                        .map_err(|(e, _)| refused(e))
                })
                .await;
                if let Err(Error::Auth(_)) = &result {
                    // Refused: the next connection asks for a new token.
                    tokens.invalidate().await;
                }
                result.map(|session| (session, Some(token.refresh_at)))
            }
            Login::Password(password) => bounded("logging in", timeout, async {
                client
                    .login(&s.username, password.expose())
                    .await
                    .map_err(|(e, _)| refused(e))
            })
            .await
            .map(|session| (session, None)),
        }
    }

    async fn handshake(&self, timed: TimedTcp) -> Result<TlsStream<TimedTcp>, Error> {
        let s = &*self.settings;
        let name = ServerName::try_from(s.host.clone())
            .map_err(|e| Error::Tls(format!("invalid server name {:?}: {e}", s.host)))?;
        bounded("negotiating TLS", s.timeout, async {
            self.tls.connect(name, timed).await.map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut {
                    Error::Timeout {
                        what: "negotiating TLS",
                        seconds: s.timeout.as_secs_f64(),
                    }
                } else {
                    Error::Tls(crate::tls::describe(&e, &s.tls.setting))
                }
            })
        })
        .await
    }
}

async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    let addr = format!("{host}:{port}");
    let found = bounded("resolving the host name", timeout, async {
        tokio::net::lookup_host(addr.as_str())
            .await
            .map_err(|e| Error::Connect {
                addr: addr.clone(),
                source: e,
            })
    })
    .await?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(Error::Connect {
            addr,
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        });
    }
    Ok(addrs)
}

/// Tries each address in turn, each bounded by `timeout`.
async fn connect_tcp(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => {
                last = Some(Error::Connect {
                    addr: addr.to_string(),
                    source: e,
                })
            }
            Err(_) => {
                last = Some(Error::Timeout {
                    what: "connecting",
                    seconds: timeout.as_secs_f64(),
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Connect {
        addr: String::new(),
        source: io::Error::new(io::ErrorKind::NotFound, "no address"),
    }))
}

/// Reads the server greeting: `* OK` (or `* PREAUTH`) before anything else is sent.
async fn read_greeting(client: &mut Client<Transport>, timeout: Duration) -> Result<(), Error> {
    bounded("reading the greeting", timeout, async {
        let greeting = client
            .read_response()
            .await
            .map_err(|e| Error::from_io("reading the greeting", timeout, e))?
            .ok_or_else(|| Error::Io("connection closed before the greeting".into()))?;
        match greeting.parsed() {
            Response::Data {
                status: Status::Ok | Status::PreAuth,
                ..
            } => Ok(()),
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Err(Error::Io(format!(
                "server said BYE: {}",
                outcome.information.as_deref().unwrap_or("")
            ))),
            other => Err(Error::Protocol(format!("unexpected greeting {other:?}"))),
        }
    })
    .await
}

/// Sends CAPABILITY before login and collects the advertised names. async-imap offers tagged
/// commands only on a logged-in session, so this one is written with a tag of our own.
async fn capabilities(client: &mut Client<Transport>) -> Result<Vec<String>, Error> {
    use tokio::io::AsyncWriteExt;
    const TAG: &str = "S0";
    let stream = client.get_mut();
    stream
        .write_all(format!("{TAG} CAPABILITY\r\n").as_bytes())
        .await
        .map_err(|e| Error::Io(format!("sending CAPABILITY: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| Error::Io(format!("sending CAPABILITY: {e}")))?;
    let mut caps = Vec::new();
    loop {
        let resp = client
            .read_response()
            .await
            .map_err(|e| Error::Io(format!("reading CAPABILITY: {e}")))?
            .ok_or_else(|| Error::Io("connection closed during CAPABILITY".into()))?;
        match resp.parsed() {
            Response::Capabilities(list) => {
                for c in list {
                    use async_imap::imap_proto::Capability as C;
                    caps.push(match c {
                        C::Imap4rev1 => "IMAP4rev1".to_string(),
                        C::Auth(a) => format!("AUTH={a}"),
                        C::Atom(a) => a.to_string(),
                    });
                }
            }
            Response::Done { tag: t, status, .. } if t.0 == TAG => {
                return match status {
                    Status::Ok => Ok(caps),
                    _ => Err(Error::Protocol("CAPABILITY refused".into())),
                };
            }
            Response::Data {
                status: Status::Bye,
                ..
            } => return Err(Error::Io("server said BYE during CAPABILITY".into())),
            _ => {}
        }
    }
}
