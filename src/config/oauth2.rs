//! `auth` and `[….oauth2]` of an IMAP source or `[notify.smtp]`: which SASL mechanism logs in,
//! and how its access token is obtained ([`crate::oauth2`]).
//!
//! ```toml
//! [sources.support]
//! auth = "xoauth2"            # password (default) | xoauth2 | oauthbearer (IMAP only)
//! username = "support@example.com"
//! [sources.support.oauth2]
//! token_url = "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token"
//! client_id = "…"
//! client_secret_file = "/run/secrets/imap-client-secret"   # client credentials
//! scope = "https://outlook.office365.com/.default"
//! # refresh_token_file = "…"     # refresh-token flow; a rotated one is saved in the state
//! #                               # directory ($STATE_DIRECTORY, else data/ beside this file)
//! # service_account_file = "…"   # Google service account JSON key (domain-wide delegation)
//! # token_command = ["…"]        # or a command printing an access token
//! # timeout = "30s"
//! ```

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::reader::{Problems, Table};
use super::settings::Secret;
use crate::oauth2::{Flow, Mechanism, OAuth2Settings};

/// Bound on one token request: the providers answer in well under a second.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a secret key of a table (`KEY_file` or the environment), as the caller's section does.
pub(super) type SecretFn<'f> = dyn FnMut(&mut Table, &str, &mut Problems) -> Option<Secret> + 'f;

/// `auth` of a table: `None` for password, else the OAuth2 mechanism. `allowed` lists the
/// mechanisms this client speaks.
pub(super) fn mechanism(
    t: &mut Table,
    allowed: &[Mechanism],
    p: &mut Problems,
) -> Option<Mechanism> {
    let names: Vec<&str> = allowed.iter().map(|m| m.name()).collect();
    match t.string("auth", p).as_deref() {
        None | Some("password") => None,
        Some(name) => match allowed.iter().find(|m| m.name() == name) {
            Some(m) => Some(*m),
            None => {
                p.push(
                    t.path("auth"),
                    format!("`{name}` is not one of password, {}", names.join(", ")),
                );
                None
            }
        },
    }
}

/// `[….oauth2]` of table `t`, required when `wanted` (an OAuth2 `auth`), refused otherwise.
/// `user` is the mailbox (the subject a Google service account acts for).
pub(super) fn oauth2(
    t: &mut Table,
    wanted: bool,
    user: Option<&str>,
    base: &Path,
    secret: &mut SecretFn<'_>,
    p: &mut Problems,
) -> Option<OAuth2Settings> {
    let present = t.raw("oauth2").is_some();
    if !wanted {
        if present {
            p.push(
                t.path("oauth2"),
                "is set but auth is password: set auth = \"xoauth2\" (or \"oauthbearer\") to log in with a token",
            );
        }
        return None;
    }
    if !present {
        p.push(
            t.path("oauth2"),
            "is required with an OAuth2 auth: token_url, client_id and client_secret_file (or refresh_token_file, service_account_file, token_command)",
        );
        return None;
    }
    let mut o = t.table("oauth2", p);
    let setting = t.path("oauth2");
    let timeout = o.duration("timeout", DEFAULT_TOKEN_TIMEOUT, p);
    let token_url = o.string("token_url", p);
    if let Some(url) = &token_url
        && !super::load::https_or_loopback(url)
    {
        p.push(
            o.path("token_url"),
            format!("`{url}` must be https:// (plain http only to a host that resolves to loopback addresses only)"),
        );
    }
    let client_id = o.string("client_id", p);
    let scope = o.string("scope", p);
    let client_secret = secret(&mut o, "client_secret", p);
    let refresh_token = secret(&mut o, "refresh_token", p);
    let service_account = o.string("service_account_file", p).map(|f| base.join(f));
    let command = o.string_list("token_command", p);
    let chosen = [
        refresh_token.is_some(),
        service_account.is_some(),
        !command.is_empty(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if chosen > 1 {
        p.push(
            &setting,
            "set only one of refresh_token_file, service_account_file and token_command",
        );
    }
    let need = |key: &str, value: &Option<String>, o: &Table, p: &mut Problems| {
        if value.is_none() {
            p.push(o.path(key), "is required for this flow");
        }
    };
    let flow = if !command.is_empty() {
        Some(Flow::Command { argv: command })
    } else if let Some(file) = service_account {
        need("scope", &scope, &o, p);
        service_account_flow(&file, token_url, user, scope.unwrap_or_default(), &o, p)
    } else if let Some(refresh_token) = refresh_token {
        need("token_url", &token_url, &o, p);
        need("client_id", &client_id, &o, p);
        let dir = std::env::var_os("STATE_DIRECTORY")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| base.join("data"));
        Some(Flow::RefreshToken {
            token_url: token_url.unwrap_or_default(),
            client_id: client_id.unwrap_or_default(),
            client_secret,
            scope,
            refresh_token,
            saved: dir.join(format!("{}.refresh-token", setting.replace('.', "-"))),
        })
    } else {
        need("token_url", &token_url, &o, p);
        need("client_id", &client_id, &o, p);
        need("scope", &scope, &o, p);
        if client_secret.is_none() && !p.0.iter().any(|x| x.key == o.path("client_secret")) {
            p.push(
                o.path("client_secret"),
                "is required for the client-credentials flow: set client_secret_file (or refresh_token_file, service_account_file, token_command)",
            );
        }
        Some(Flow::ClientCredentials {
            token_url: token_url.unwrap_or_default(),
            client_id: client_id.unwrap_or_default(),
            client_secret: client_secret.unwrap_or_else(|| Secret::new("")),
            scope: scope.unwrap_or_default(),
        })
    };
    o.finish(p);
    Some(OAuth2Settings {
        flow: flow?,
        timeout,
        setting,
    })
}

/// A Google service account's JSON key: `client_email`, `private_key` and `token_uri`.
fn service_account_flow(
    file: &Path,
    token_url: Option<String>,
    user: Option<&str>,
    scope: String,
    o: &Table,
    p: &mut Problems,
) -> Option<Flow> {
    let key = o.path("service_account_file");
    let json: Value = match std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            p.push(key, format!("cannot read {}: {e}", file.display()));
            return None;
        }
    };
    let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(client_email), Some(private_key)) = (field("client_email"), field("private_key"))
    else {
        p.push(
            key,
            format!(
                "{} is not a service account key (client_email and private_key missing)",
                file.display()
            ),
        );
        return None;
    };
    let private_key = Secret::new(private_key);
    let subject = user.unwrap_or_default().to_string();
    let token_url = token_url
        .or_else(|| field("token_uri"))
        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
    if let Err(e) = crate::oauth2::service_account_jwt(
        &client_email,
        &private_key,
        &subject,
        &scope,
        &token_url,
        0,
    ) {
        p.push(key, format!("{}: {e}", file.display()));
        return None;
    }
    Some(Flow::ServiceAccount {
        token_url,
        client_email,
        private_key,
        subject,
        scope,
    })
}

/// As `check-config` prints it: the flow and what it will request, secrets left out.
pub(super) fn effective(o: &OAuth2Settings) -> Value {
    json!({
        "flow": o.flow.name(),
        "requests": o.flow.request(),
        "timeout": humantime::format_duration(o.timeout).to_string(),
    })
}
