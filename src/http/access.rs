//! Who may call what: the tokens of each route and the `Host` check.
//!
//! | route | no token configured (loopback only) | once any token is configured |
//! |---|---|---|
//! | `GET /healthz`, `GET /readyz`, `GET /readyz/active` | open | open |
//! | `GET /metrics` | open | `http.metrics_token` if set, else open |
//! | `GET /`, `GET /api/v1/inquiries[/{id}]`, `GET /inquiries/{id}` | open | `http.read_token` or `http.token` |
//! | `GET /api/v1/report` | 403 | `http.report_token` |
//! | `POST …/ack`, `POST /api/v1/calls` | open | `http.token` |
//!
//! Tokens are presented as `Authorization: Bearer …`. A wallboard that cannot send headers
//! opens `/?token=<read token>` once: the answer sets the token as an `HttpOnly`,
//! `SameSite=Strict` cookie and redirects to `/`, and that cookie is accepted on the read routes
//! only (never for writes, so a cross-site form cannot act with it). Every comparison hashes
//! both sides and compares the digests in constant time.
//!
//! The `Host` check refuses (421) requests whose `Host` is not a loopback name, the bind address
//! (any IP literal when bound to every address), `http.public_url`'s host or one of
//! `http.allowed_hosts`: a web page that rebinds its own name to 127.0.0.1 still sends its own
//! name, and is refused. The health routes are exempt (load balancers probe them by IP);
//! a request without `Host` (HTTP/1.0) cannot come from a browser and is let through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::{HttpSettings, Secret};

/// Name of the cookie a wallboard keeps the read token in.
pub const READ_COOKIE: &str = "slawatch_read";

/// How long the wallboard cookie lasts: a TV on the desk runs for months; rotating the read
/// token ends it sooner.
const COOKIE_MAX_AGE_SECONDS: u64 = 400 * 24 * 3600;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `/metrics`: the metrics token when set.
    Metrics,
    /// Customer data: the read or the write token.
    Read,
    /// The auditors' report: the report token, and nothing without it.
    Report,
    /// Acks and pushed calls: the write token.
    Write,
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub write: Option<Secret>,
    pub read: Option<Secret>,
    pub report: Option<Secret>,
    pub metrics: Option<Secret>,
}

impl Tokens {
    /// Whether any token is configured (then every route but health needs one).
    pub fn any(&self) -> bool {
        self.write.is_some()
            || self.read.is_some()
            || self.report.is_some()
            || self.metrics.is_some()
    }
}

/// The `Host` names requests may carry.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// Lower-case names and IP literals (IPv6 without brackets).
    names: Vec<String>,
    /// Bound to every address: any IP literal names this machine.
    any_ip: bool,
}

impl Hosts {
    /// Loopback names only (tests, and the base of every other set).
    pub fn loopback() -> Hosts {
        Hosts {
            names: vec!["localhost".into()],
            any_ip: false,
        }
    }

    /// Loopback names, `bind`, the host of `public_url` and `extra`.
    pub fn new(bind: SocketAddr, public_url: &str, extra: &[String]) -> Hosts {
        let mut hosts = Hosts::loopback();
        if bind.ip().is_unspecified() {
            hosts.any_ip = true;
        } else {
            hosts.names.push(bind.ip().to_string());
        }
        if let Some(host) = reqwest::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
        {
            hosts.names.push(bare(&host).to_ascii_lowercase());
        }
        hosts
            .names
            .extend(extra.iter().map(|h| bare(h).to_ascii_lowercase()));
        hosts
    }

    /// Whether a `Host` header value (`name`, `name:port`, `[v6]:port`) is accepted.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            }),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback() || self.any_ip || self.names.contains(&ip.to_string());
        }
        name == "localhost" || name.ends_with(".localhost") || self.names.contains(&name)
    }
}

fn bare(host: &str) -> &str {
    host.trim().trim_start_matches('[').trim_end_matches(']')
}

/// Tokens and hosts, as every request is checked against them.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub tokens: Tokens,
    pub hosts: Hosts,
    /// Mark the wallboard cookie `Secure` (the public URL is https).
    pub secure_cookie: bool,
    /// Checks the signed links accepted on an inquiry's page and actions (`http.link_key`).
    pub links: Option<Arc<super::links::LinkKey>>,
}

impl Access {
    /// From the `[http]` settings.
    pub fn from_settings(s: &HttpSettings) -> Access {
        Access {
            tokens: Tokens {
                write: s.token.clone(),
                read: s.read_token.clone(),
                report: s.report_token.clone(),
                metrics: s.metrics_token.clone(),
            },
            hosts: Hosts::new(s.bind, &s.public_url, &s.allowed_hosts),
            secure_cookie: s.public_url.starts_with("https://"),
            links: super::links::LinkKey::from_settings(s).map(Arc::new),
        }
    }

    /// Loopback hosts and these tokens (tests).
    pub fn with_tokens(tokens: Tokens) -> Access {
        Access {
            tokens,
            hosts: Hosts::loopback(),
            secure_cookie: false,
            links: None,
        }
    }

    /// Whether a request with these headers may use a route that needs `need`.
    pub fn check(&self, need: Need, headers: &HeaderMap) -> Result<(), ApiError> {
        let t = &self.tokens;
        let accepted: Vec<&Secret> = match need {
            Need::Metrics => match &t.metrics {
                None => return Ok(()),
                Some(m) => vec![m],
            },
            Need::Read if !t.any() => return Ok(()),
            Need::Read => t.read.iter().chain(t.write.iter()).collect(),
            Need::Report => match &t.report {
                None => {
                    return Err(ApiError::Forbidden(
                        "reports disabled: set http.report_token".into(),
                    ));
                }
                Some(r) => vec![r],
            },
            Need::Write if !t.any() => return Ok(()),
            Need::Write => match &t.write {
                None => {
                    return Err(ApiError::Forbidden(
                        "writes disabled: set http.token".into(),
                    ));
                }
                Some(w) => vec![w],
            },
        };
        let mut presented: Vec<&str> = bearer(headers).into_iter().collect();
        if need == Need::Read {
            presented.extend(cookie(headers, READ_COOKIE));
        }
        if presented
            .iter()
            .any(|p| accepted.iter().any(|a| same(p, a.expose())))
        {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// The bearer token of `Authorization`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
}

/// The value of cookie `name`, if any.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Equal-time comparison of two tokens: both are hashed first, so neither the content nor the
/// length of the configured one leaks through timing.
pub fn same(presented: &str, configured: &str) -> bool {
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(configured.as_bytes()),
    );
    a[..].ct_eq(&b[..]).into()
}

/// Checks `Authorization: Bearer <token>` against one token when it is configured (the check
/// of a single role, e.g. in tests).
pub fn authorize(token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    match bearer(headers) {
        Some(p) if same(p, token.expose()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Middleware of the routes needing `need`. Runs before any body is read, so a client without
/// the token cannot hold the connection with a slow body.
pub async fn require(
    State((access, need)): State<(Arc<Access>, Need)>,
    request: Request,
    next: Next,
) -> Response {
    if need == Need::Read
        && access.tokens.any()
        && request.method() == Method::GET
        && request.uri().path() == "/"
        && let Some(token) = query_token(request.uri())
    {
        return set_cookie(&access, &token, request.uri().path());
    }
    match access.check(need, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// `token=…` of the query string, percent-decoded.
fn query_token(uri: &axum::http::Uri) -> Option<String> {
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// `GET /?token=<read token>`: keeps the read token in a cookie and sends the browser back to
/// the page without it in the address.
fn set_cookie(access: &Access, token: &str, path: &str) -> Response {
    let Some(read) = &access.tokens.read else {
        return ApiError::Forbidden("a token in the URL needs http.read_token".into())
            .into_response();
    };
    if !same(token, read.expose()) || token.is_empty() {
        return ApiError::Unauthorized.into_response();
    }
    let cookie = format!(
        "{READ_COOKIE}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_SECONDS}; HttpOnly; SameSite=Strict{}",
        if access.secure_cookie { "; Secure" } else { "" }
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, v);
    }
    let location = if path.starts_with('/') { path } else { "/" };
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Middleware refusing requests addressed to a host name that is not this daemon's.
pub async fn check_host(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" || path == "/readyz/active" {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}").to_string())
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if !access.hosts.allows(&h) => (
            StatusCode::MISDIRECTED_REQUEST,
            axum::Json(serde_json::json!({
                "error": "this Host is not served here: add it to http.allowed_hosts or set http.public_url",
            })),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>, cookie: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        if let Some(c) = cookie {
            h.insert(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let token = Secret::new("s3cret");
        assert!(authorize(None, &headers(None, None)).is_ok());
        assert!(authorize(Some(&token), &headers(None, None)).is_err());
        assert!(authorize(Some(&token), &headers(Some("Bearer s3cret"), None)).is_ok());
        assert!(authorize(Some(&token), &headers(Some("bearer  s3cret "), None)).is_ok());
        assert!(authorize(Some(&token), &headers(Some("Bearer s3cre"), None)).is_err());
        assert!(authorize(Some(&token), &headers(Some("Basic s3cret"), None)).is_err());
    }

    #[test]
    fn the_read_cookie_reads_but_never_writes() {
        let access = Access::with_tokens(Tokens {
            write: Some(Secret::new("w")),
            read: Some(Secret::new("r")),
            ..Tokens::default()
        });
        let cookie = headers(None, Some("theme=dark; slawatch_read=r"));
        assert!(access.check(Need::Read, &cookie).is_ok());
        assert!(access.check(Need::Write, &cookie).is_err());
        let write_cookie = headers(None, Some("slawatch_read=w"));
        assert!(access.check(Need::Read, &write_cookie).is_ok());
        assert!(access.check(Need::Write, &write_cookie).is_err());
        assert!(
            access
                .check(Need::Read, &headers(None, Some("slawatch_read=x")))
                .is_err()
        );
    }

    #[test]
    fn hosts_are_names_not_prefixes() {
        let hosts = Hosts::new(
            "192.0.2.10:9750".parse().unwrap(),
            "https://sla.example.com/desk",
            &["wallboard.lan".to_string()],
        );
        for ok in [
            "localhost",
            "localhost:9750",
            "app.localhost",
            "127.0.0.1:9750",
            "[::1]:9750",
            "192.0.2.10:9750",
            "sla.example.com",
            "SLA.example.com.:443",
            "wallboard.lan",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "localhost.evil.example",
            "sla.example.com.evil.example",
            "evil.example",
            "192.0.2.11:9750",
            "",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let any = Hosts::new("0.0.0.0:9750".parse().unwrap(), "http://0.0.0.0:9750", &[]);
        assert!(any.allows("192.0.2.77:9750"));
        assert!(!any.allows("rebind.evil.example:9750"));
    }
}
