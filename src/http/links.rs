//! Signed action links: what lets the on-call manager act from an alert, on a phone, without a
//! token.
//!
//! A link names an inquiry, an action (`view` its page, `take` it, say it was `answered`
//! elsewhere), a recipient (the on-call person the alert went to, or empty for a shared
//! channel such as a Slack webhook, whose form then asks who is acting) and an expiry, and
//! carries `sig` = HMAC-SHA256 over exactly those four with the server's key
//! (`http.link_key_file`). The server checks the signature in constant time and the expiry
//! against its own clock: a link for another inquiry or another action, one whose recipient or
//! expiry was edited, or one past its expiry is refused. The key never leaves the server and is
//! never logged; links are short-lived (`http.link_ttl`), and every alert brings fresh ones.
//!
//! A link is accepted instead of a token only on its inquiry's page and actions
//! ([`super::actions`]); it grants nothing else.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ring::hmac;
use slawatch_core::domain::InquiryId;

/// Shortest key accepted: 32 bytes, the HMAC-SHA256 block's half and the digest's size.
pub const MIN_KEY_BYTES: usize = 32;

/// What a link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Open the inquiry's page (with the action buttons of the same recipient).
    View,
    /// "I'm on it".
    Take,
    /// "Answered elsewhere" (phone or other, with a note).
    Answered,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::View => "view",
            LinkAction::Take => "take",
            LinkAction::Answered => "answered",
        }
    }

    /// The path of the action for inquiry `id` (the page for `view`).
    pub fn path(self, id: &InquiryId) -> String {
        match self {
            LinkAction::View => format!("/inquiries/{}", encode(id.as_str())),
            a => format!("/inquiries/{}/{}", encode(id.as_str()), a.as_str()),
        }
    }
}

/// The parameters a link carries in its query string.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
pub struct LinkParams {
    /// The recipient (empty: a shared channel).
    #[serde(default)]
    pub to: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Lower-case hex HMAC-SHA256.
    pub sig: String,
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link has expired: open the latest alert for a fresh one")]
    Expired,
    #[error("this link is not valid for this inquiry and action")]
    Invalid,
}

/// The server's link key and how long links last.
pub struct LinkKey {
    key: hmac::Key,
    /// `http.public_url`, without a trailing slash.
    base: String,
    ttl: chrono::Duration,
}

impl std::fmt::Debug for LinkKey {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKey")
            .field("base", &self.base)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LinkKey {
    /// A key from its secret bytes (at least [`MIN_KEY_BYTES`]: checked by `check-config`).
    pub fn new(secret: &[u8], public_url: &str, ttl: Duration) -> LinkKey {
        LinkKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            base: public_url.trim_end_matches('/').to_string(),
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(2)),
        }
    }

    /// The key `[http]` configures (`link_key`, `public_url`, `link_ttl`), if any.
    pub fn from_settings(s: &crate::config::HttpSettings) -> Option<LinkKey> {
        s.link_key
            .as_ref()
            .map(|k| LinkKey::new(k.expose().as_bytes(), &s.public_url, s.link_ttl))
    }

    /// The signed bytes: a domain line, then each field length-prefixed, so no two different
    /// (inquiry, action, recipient, expiry) give the same bytes.
    fn message(id: &InquiryId, action: LinkAction, to: &str, exp: i64) -> String {
        let id = id.as_str();
        format!(
            "slawatch-link-v1\n{}:{id}\n{}\n{}:{to}\n{exp}",
            id.len(),
            action.as_str(),
            to.len()
        )
    }

    fn sign_raw(&self, id: &InquiryId, action: LinkAction, to: &str, exp: i64) -> String {
        hex::encode(hmac::sign(&self.key, Self::message(id, action, to, exp).as_bytes()).as_ref())
    }

    /// The parameters of a link for `action` on `id` for `to`, expiring `ttl` after `now`.
    pub fn sign(
        &self,
        id: &InquiryId,
        action: LinkAction,
        to: &str,
        now: DateTime<Utc>,
    ) -> LinkParams {
        let exp = (now + self.ttl).timestamp();
        self.sign_until(id, action, to, exp)
    }

    /// The parameters of a link expiring at `exp` (Unix seconds).
    pub fn sign_until(&self, id: &InquiryId, action: LinkAction, to: &str, exp: i64) -> LinkParams {
        LinkParams {
            to: to.to_string(),
            exp,
            sig: self.sign_raw(id, action, to, exp),
        }
    }

    /// The path and query of a signed link (relative to the server).
    pub fn path(id: &InquiryId, action: LinkAction, p: &LinkParams) -> String {
        format!(
            "{}?to={}&exp={}&sig={}",
            action.path(id),
            encode(&p.to),
            p.exp,
            p.sig
        )
    }

    /// The full URL of a signed link under `public_url`.
    pub fn url(&self, id: &InquiryId, action: LinkAction, to: &str, now: DateTime<Utc>) -> String {
        let p = self.sign(id, action, to, now);
        format!("{}{}", self.base, Self::path(id, action, &p))
    }

    /// Checks a link's parameters for `action` on `id` at `now`; the recipient when valid.
    pub fn verify(
        &self,
        id: &InquiryId,
        action: LinkAction,
        p: &LinkParams,
        now: DateTime<Utc>,
    ) -> Result<String, LinkError> {
        let sig = hex::decode(&p.sig).map_err(|_| LinkError::Invalid)?;
        hmac::verify(
            &self.key,
            Self::message(id, action, &p.to, p.exp).as_bytes(),
            &sig,
        )
        .map_err(|_| LinkError::Invalid)?;
        // Checked after the signature: an edited expiry is "not valid", not "expired".
        if now.timestamp() >= p.exp {
            return Err(LinkError::Expired);
        }
        Ok(p.to.clone())
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::new(
            b"0123456789abcdef0123456789abcdef",
            "https://sla.example/",
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn a_signed_link_is_accepted_for_its_inquiry_and_action_only() {
        let k = key();
        let now = Utc::now();
        let id = InquiryId("e1".into());
        let p = k.sign(&id, LinkAction::Take, "ana", now);
        assert_eq!(
            k.verify(&id, LinkAction::Take, &p, now).as_deref(),
            Ok("ana")
        );
        // Another inquiry, another action.
        let other = InquiryId("e2".into());
        assert_eq!(
            k.verify(&other, LinkAction::Take, &p, now),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            k.verify(&id, LinkAction::Answered, &p, now),
            Err(LinkError::Invalid)
        );
        // Edited recipient, expiry or signature.
        let mut edited = p.clone();
        edited.to = "lead".into();
        assert_eq!(
            k.verify(&id, LinkAction::Take, &edited, now),
            Err(LinkError::Invalid)
        );
        let mut later = p.clone();
        later.exp += 3600;
        assert_eq!(
            k.verify(&id, LinkAction::Take, &later, now),
            Err(LinkError::Invalid)
        );
        let mut sig = p.clone();
        sig.sig
            .replace_range(0..2, if &sig.sig[0..2] == "00" { "11" } else { "00" });
        assert_eq!(
            k.verify(&id, LinkAction::Take, &sig, now),
            Err(LinkError::Invalid)
        );
        sig.sig = "zz".into();
        assert_eq!(
            k.verify(&id, LinkAction::Take, &sig, now),
            Err(LinkError::Invalid)
        );
        // Expired: valid signature, past its expiry.
        assert_eq!(
            k.verify(&id, LinkAction::Take, &p, now + chrono::Duration::hours(1)),
            Err(LinkError::Expired)
        );
        // Another key.
        let other_key = LinkKey::new(
            b"another key of thirty-two bytes!",
            "https://sla.example",
            Duration::from_secs(3600),
        );
        assert_eq!(
            other_key.verify(&id, LinkAction::Take, &p, now),
            Err(LinkError::Invalid)
        );
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let k = key();
        let a = k.sign_until(&InquiryId("e1".into()), LinkAction::View, "1:x", 10);
        let b = k.sign_until(&InquiryId("e1\n4:view".into()), LinkAction::View, "x", 10);
        assert_ne!(a.sig, b.sig);
    }

    #[test]
    fn urls_are_under_the_public_url_and_encoded() {
        let k = key();
        let url = k.url(
            &InquiryId("e1".into()),
            LinkAction::Answered,
            "Ana María",
            Utc::now(),
        );
        assert!(
            url.starts_with("https://sla.example/inquiries/e1/answered?to=Ana%20Mar%C3%ADa&exp="),
            "{url}"
        );
        assert!(format!("{k:?}").contains("sla.example"));
    }
}
