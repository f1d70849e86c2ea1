//! OAuth2 access tokens for mailboxes that no longer accept passwords (Microsoft 365, Google
//! Workspace): obtained from the provider's token endpoint, cached, refreshed before they expire
//! and after the server refused one.
//!
//! Four ways to get one ([`Flow`]), each a form-encoded `POST` to `token_url` answered by JSON
//! `{"access_token", "token_type": "Bearer", "expires_in", "refresh_token"?}`, exactly as the
//! providers document them (no Microsoft or Google server can run in the tests, which play
//! their part on loopback with these shapes):
//!
//! - client credentials (Microsoft 365 app-only access): `grant_type=client_credentials`,
//!   `client_id`, `client_secret`, `scope` (e.g. `https://outlook.office365.com/.default`) —
//!   Microsoft identity platform, "OAuth 2.0 client credentials flow",
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>,
//!   and "Authenticate an IMAP, POP or SMTP connection using OAuth",
//!   <https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth>;
//! - refresh token (a delegated grant made once by a person): `grant_type=refresh_token`,
//!   `refresh_token`, `client_id`, optional `client_secret` and `scope`; a rotated
//!   `refresh_token` in the answer replaces the old one and is saved (0600) in the state
//!   directory, so a read-only configuration keeps working — Microsoft identity platform,
//!   "Refresh the access token",
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token>;
//! - Google service account with domain-wide delegation (RFC 7523): a JWT signed RS256 with the
//!   account's key, `iss` = its `client_email`, `sub` = the mailbox, `scope`
//!   (`https://mail.google.com/`), `aud` = `token_url`, one hour; posted as
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…` — Google Identity,
//!   "Using OAuth 2.0 for Server to Server Applications",
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>;
//! - a command that prints an access token (or such a JSON answer) on its standard output.
//!
//! Secrets (client secret, refresh token, private key, tokens) are [`Secret`]s: never logged,
//! never in an error text. An endpoint's error answer (`error`, `error_description`) is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::config::Secret;

/// How an access token is obtained.
#[derive(Debug, Clone)]
pub enum Flow {
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        scope: String,
    },
    RefreshToken {
        token_url: String,
        client_id: String,
        client_secret: Option<Secret>,
        scope: Option<String>,
        /// The refresh token as configured (`refresh_token_file`).
        refresh_token: Secret,
        /// Where a rotated refresh token is saved, and read first at start-up.
        saved: PathBuf,
    },
    ServiceAccount {
        token_url: String,
        client_email: String,
        /// PKCS#8 PEM (`private_key` of the JSON key file).
        private_key: Secret,
        /// The mailbox acted for (domain-wide delegation).
        subject: String,
        scope: String,
    },
    Command {
        argv: Vec<String>,
    },
}

/// `[….oauth2]` of an IMAP source or `[notify.smtp]`.
#[derive(Debug, Clone)]
pub struct OAuth2Settings {
    pub flow: Flow,
    /// Bound on one token request or command.
    pub timeout: Duration,
    /// The table these settings are in (`sources.support.oauth2`), for error texts.
    pub setting: String,
}

impl Flow {
    /// The flow's name as `check-config` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Flow::ClientCredentials { .. } => "client_credentials",
            Flow::RefreshToken { .. } => "refresh_token",
            Flow::ServiceAccount { .. } => "service_account",
            Flow::Command { .. } => "token_command",
        }
    }

    /// What the flow will request, in one line (`check-config`), secrets left out.
    pub fn request(&self) -> String {
        match self {
            Flow::ClientCredentials {
                token_url,
                client_id,
                scope,
                ..
            } => format!(
                "POST {token_url} grant_type=client_credentials client_id={client_id} scope={scope} client_secret=<redacted>"
            ),
            Flow::RefreshToken {
                token_url,
                client_id,
                scope,
                saved,
                ..
            } => format!(
                "POST {token_url} grant_type=refresh_token client_id={client_id}{} refresh_token=<redacted> (a rotated one is saved to {})",
                scope
                    .as_ref()
                    .map(|s| format!(" scope={s}"))
                    .unwrap_or_default(),
                saved.display()
            ),
            Flow::ServiceAccount {
                token_url,
                client_email,
                subject,
                scope,
                ..
            } => format!(
                "POST {token_url} grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer assertion=<JWT RS256 iss={client_email} sub={subject} scope={scope}>"
            ),
            Flow::Command { argv } => {
                format!("runs {argv:?} and reads an access token from its output")
            }
        }
    }
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot reach the token endpoint {url} ({setting}.token_url): {message}")]
    Request {
        setting: String,
        url: String,
        message: String,
    },
    #[error("the token endpoint {url} refused ({status}): {error}; check {setting}")]
    Refused {
        setting: String,
        url: String,
        status: u16,
        error: String,
    },
    #[error("the token endpoint's answer is not a bearer token ({setting}.token_url): {message}")]
    Answer { setting: String, message: String },
    #[error("{setting}.token_command {message}")]
    Command { setting: String, message: String },
    #[error("{setting}.service_account_file: {message}")]
    Key { setting: String, message: String },
}

/// An access token and when to stop using it.
#[derive(Clone)]
pub struct AccessToken {
    pub secret: Secret,
    /// When to get a new one: some time before it expires ([`refresh_at`]).
    pub refresh_at: Instant,
}

/// A command's token without an expiry is used this long.
const COMMAND_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// When a token that lives `lifetime` from `now` is refreshed: five minutes before it expires
/// (the providers' tokens live an hour), or halfway for short-lived ones, so a connection
/// opened just before never carries an expired token.
fn refresh_at(now: Instant, lifetime: Duration) -> Instant {
    now + lifetime - (lifetime / 2).min(Duration::from_secs(300))
}

/// Obtains, caches and refreshes one client's access token; shared by all its connections.
pub struct TokenSource {
    settings: OAuth2Settings,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
    /// The refresh token in use (the rotated one once the endpoint rotated it).
    refresh_token: tokio::sync::Mutex<Option<Secret>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("flow", &self.settings.flow.name())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    pub fn new(settings: OAuth2Settings) -> Result<Arc<TokenSource>, crate::tls::TlsError> {
        let client = crate::tls::http_client(settings.timeout, &crate::tls::TlsTrust::default())?;
        let refresh_token = match &settings.flow {
            Flow::RefreshToken {
                refresh_token,
                saved,
                ..
            } => Some(
                std::fs::read_to_string(saved)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .map(Secret::new)
                    .unwrap_or_else(|| refresh_token.clone()),
            ),
            _ => None,
        };
        Ok(Arc::new(TokenSource {
            settings,
            client,
            cached: tokio::sync::Mutex::new(None),
            refresh_token: tokio::sync::Mutex::new(refresh_token),
        }))
    }

    pub fn flow(&self) -> &Flow {
        &self.settings.flow
    }

    /// A token good for a new connection: the cached one until its refresh time, else a new
    /// one. Concurrent callers wait for one request.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.clone());
        }
        let fresh = self.fetch().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets the cached token: the server refused it, the next connection gets a new one.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let setting = &self.settings.setting;
        let (url, form): (&str, Vec<(&str, String)>) = match &self.settings.flow {
            Flow::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => (
                token_url,
                vec![
                    ("grant_type", "client_credentials".into()),
                    ("client_id", client_id.clone()),
                    ("client_secret", client_secret.expose().to_string()),
                    ("scope", scope.clone()),
                ],
            ),
            Flow::RefreshToken {
                token_url,
                client_id,
                client_secret,
                scope,
                ..
            } => {
                let refresh = self.refresh_token.lock().await.clone();
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    (
                        "refresh_token",
                        refresh.map(|r| r.expose().to_string()).unwrap_or_default(),
                    ),
                    ("client_id", client_id.clone()),
                ];
                if let Some(s) = client_secret {
                    form.push(("client_secret", s.expose().to_string()));
                }
                if let Some(s) = scope {
                    form.push(("scope", s.clone()));
                }
                (token_url, form)
            }
            Flow::ServiceAccount {
                token_url,
                client_email,
                private_key,
                subject,
                scope,
            } => {
                let assertion = service_account_jwt(
                    client_email,
                    private_key,
                    subject,
                    scope,
                    token_url,
                    chrono::Utc::now().timestamp(),
                )
                .map_err(|message| TokenError::Key {
                    setting: setting.clone(),
                    message,
                })?;
                (
                    token_url,
                    vec![
                        (
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                        ),
                        ("assertion", assertion),
                    ],
                )
            }
            Flow::Command { argv } => return self.run_command(argv).await,
        };
        let response = self
            .client
            .post(url)
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Request {
                setting: setting.clone(),
                url: url.to_string(),
                message: crate::tls::describe(&e.without_url(), setting),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| TokenError::Request {
            setting: setting.clone(),
            url: url.to_string(),
            message: e.without_url().to_string(),
        })?;
        if !status.is_success() {
            let error = serde_json::from_slice::<ErrorAnswer>(&body)
                .ok()
                .map(|e| {
                    let code = e.error.unwrap_or_else(|| "error".into());
                    match e.error_description {
                        Some(d) => format!("{code}: {}", d.lines().next().unwrap_or_default()),
                        None => code,
                    }
                })
                .unwrap_or_else(|| "no OAuth2 error in the answer".into());
            return Err(TokenError::Refused {
                setting: setting.clone(),
                url: url.to_string(),
                status: status.as_u16(),
                error,
            });
        }
        let answer = self.parse_answer(&body)?;
        if let (Some(rotated), Flow::RefreshToken { saved, .. }) = (&answer.1, &self.settings.flow)
        {
            self.save_refresh_token(rotated, saved).await;
        }
        Ok(answer.0)
    }

    /// The access token (and a rotated refresh token) of a token endpoint's JSON answer.
    fn parse_answer(&self, body: &[u8]) -> Result<(AccessToken, Option<Secret>), TokenError> {
        let bad = |m: &str| TokenError::Answer {
            setting: self.settings.setting.clone(),
            message: m.to_string(),
        };
        let a: TokenAnswer = serde_json::from_slice(body).map_err(|_| bad("not a JSON object"))?;
        let token = a
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("no access_token"))?;
        if let Some(kind) = &a.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(bad(&format!("token_type is {kind}, not Bearer")));
        }
        // RFC 6749 §5.1 says a number; some servers send a string.
        let lifetime = match &a.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .map(Duration::from_secs)
        .unwrap_or(COMMAND_TOKEN_LIFETIME);
        Ok((
            AccessToken {
                secret: Secret::new(token),
                refresh_at: refresh_at(Instant::now(), lifetime),
            },
            a.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        ))
    }

    async fn save_refresh_token(&self, rotated: &Secret, saved: &std::path::Path) {
        let mut current = self.refresh_token.lock().await;
        if current.as_ref() == Some(rotated) {
            return;
        }
        *current = Some(rotated.clone());
        if let Err(e) = write_private(saved, rotated.expose()) {
            tracing::error!(
                setting = %self.settings.setting, file = %saved.display(), error = %e,
                "Cannot save the rotated refresh token; it is kept in memory, but after a restart the configured one may no longer work."
            );
        } else {
            tracing::info!(setting = %self.settings.setting, file = %saved.display(), "Saved the rotated refresh token.");
        }
    }

    async fn run_command(&self, argv: &[String]) -> Result<AccessToken, TokenError> {
        let fail = |message: String| TokenError::Command {
            setting: self.settings.setting.clone(),
            message,
        };
        let (program, args) = argv.split_first().ok_or_else(|| fail("is empty".into()))?;
        let run = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.settings.timeout, run)
            .await
            .map_err(|_| {
                fail(format!(
                    "did not finish within {}",
                    humantime::format_duration(self.settings.timeout)
                ))
            })?
            .map_err(|e| fail(format!("cannot run `{program}`: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(fail(format!(
                "failed ({}): {}",
                out.status,
                stderr.lines().next().unwrap_or_default()
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.trim_start().starts_with('{') {
            return Ok(self.parse_answer(stdout.as_bytes())?.0);
        }
        let token = stdout.lines().next().unwrap_or_default().trim().to_string();
        if token.is_empty() {
            return Err(fail("printed no access token".into()));
        }
        Ok(AccessToken {
            secret: Secret::new(token),
            refresh_at: Instant::now() + COMMAND_TOKEN_LIFETIME,
        })
    }
}

/// Writes `text` to `path` readable by its owner only, atomically (temp file, rename).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The RFC 7523 assertion of a Google service account, signed RS256, valid one hour from `now`.
pub fn service_account_jwt(
    client_email: &str,
    private_key_pem: &Secret,
    subject: &str,
    scope: &str,
    audience: &str,
    now: i64,
) -> Result<String, String> {
    use base64::Engine as _;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = match PrivateKeyDer::from_pem_slice(private_key_pem.expose().as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(der)) => der,
        Ok(_) => return Err("private_key is not a PKCS#8 RSA key".into()),
        Err(_) => return Err("private_key is not a PEM private key".into()),
    };
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key.secret_pkcs8_der())
        .map_err(|e| format!("private_key is not a usable RSA key: {e}"))?;
    let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = b64.encode(
        serde_json::json!({
            "iss": client_email, "sub": subject, "scope": scope, "aud": audience,
            "iat": now, "exp": now + 3600,
        })
        .to_string(),
    );
    let signing_input = format!("{header}.{claims}");
    let mut signature = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the assertion failed".to_string())?;
    Ok(format!("{signing_input}.{}", b64.encode(signature)))
}

/// The SASL initial response for `mechanism` (`XOAUTH2`, or `OAUTHBEARER` of RFC 7628 §3.1 with
/// the host and port the client connects to).
pub fn sasl_response(
    mechanism: Mechanism,
    user: &str,
    token: &Secret,
    host: &str,
    port: u16,
) -> String {
    match mechanism {
        Mechanism::XOAuth2 => format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose()),
        Mechanism::OAuthBearer => format!(
            "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
            user.replace('=', "=3D").replace(',', "=2C"),
            token.expose()
        ),
    }
}

/// The SASL mechanisms slawatch speaks with an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    /// The value of the `auth` setting.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::XOAuth2 => "xoauth2",
            Mechanism::OAuthBearer => "oauthbearer",
        }
    }

    pub fn sasl_name(self) -> &'static str {
        match self {
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_due_five_minutes_early_or_halfway_for_short_tokens() {
        let now = Instant::now();
        assert_eq!(
            refresh_at(now, Duration::from_secs(3600)),
            now + Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_at(now, Duration::from_secs(20)),
            now + Duration::from_secs(10)
        );
    }

    #[test]
    fn sasl_responses_follow_the_documented_shapes() {
        let t = Secret::new("tok");
        assert_eq!(
            sasl_response(Mechanism::XOAuth2, "a@b.example", &t, "h", 993),
            "user=a@b.example\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            sasl_response(Mechanism::OAuthBearer, "a,=b", &t, "imap.example", 993),
            "n,a=a=2C=3Db,\x01host=imap.example\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }
}
