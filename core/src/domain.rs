//! The shared vocabulary of slawatch: channels, languages and inquiry ids.
//!
//! Every part of the flow (sources, tracker, ledger, scheduler, notifiers, HTTP) speaks in these
//! types, so they live apart from all of them. Each has one spelling on the wire (`as_str`), used
//! in JSON, metric labels and the ledger alike.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the customer reached the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Phone,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Phone];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The languages the desk promises to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Es,
    Ar,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::En, Language::Es, Language::Ar];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
            Language::Ar => "ar",
        }
    }

    /// Parses a language tag such as `es`, `es-MX` or `AR` (only the primary subtag counts).
    pub fn parse(tag: &str) -> Option<Language> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Language::ALL.into_iter().find(|l| l.as_str() == primary)
    }

    /// English name, for alert texts ("Arabic email from …").
    pub fn name(self) -> &'static str {
        match self {
            Language::En => "English",
            Language::Es => "Spanish",
            Language::Ar => "Arabic",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable identifier of an inquiry: derived from the channel and the external id of the message
/// or call that opened it, so replaying the same input always yields the same id.
///
/// Stored inline (16 characters, no heap allocation): the id is cloned into every index of the
/// tracker and the scheduler, so with 100,000 open inquiries this saves several allocations each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InquiryId(pub smol_str::SmolStr);

impl InquiryId {
    pub fn derive(channel: Channel, external_id: &str) -> InquiryId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{}\n{}", channel.as_str(), external_id).as_bytes());
        let prefix = match channel {
            Channel::Email => 'e',
            Channel::Phone => 'p',
        };
        InquiryId::from_display(format!("{prefix}{}", &hex::encode(digest)[..15]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id from any text (ids from requests, test fixtures).
    pub fn from_display(text: impl AsRef<str>) -> InquiryId {
        InquiryId(text.as_ref().into())
    }
}

impl fmt::Display for InquiryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_parse_by_primary_subtag() {
        assert_eq!(Language::parse("es-MX"), Some(Language::Es));
        assert_eq!(Language::parse(" AR "), Some(Language::Ar));
        assert_eq!(Language::parse("fr"), None);
    }

    #[test]
    fn inquiry_ids_are_stable_and_channel_scoped() {
        let a = InquiryId::derive(Channel::Email, "<m1@x>");
        assert_eq!(a, InquiryId::derive(Channel::Email, "<m1@x>"));
        assert_ne!(a, InquiryId::derive(Channel::Phone, "<m1@x>"));
        assert!(a.as_str().starts_with('e') && a.as_str().len() == 16);
    }
}
