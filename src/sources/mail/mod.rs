//! Pure mail parsing: raw RFC 5322 bytes → [`Mail`] facts. No I/O.

use chrono::{DateTime, Utc};

use crate::tracker::observation::Mail;

/// Where and when a message was found: what the mailbox says, not the message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub source: String,
    pub folder: String,
    /// Server delivery time (IMAP INTERNALDATE, Maildir delivery time).
    pub delivered_at: DateTime<Utc>,
    /// When slawatch read it.
    pub seen_at: DateTime<Utc>,
}

/// Parses a message (headers plus a possibly truncated body prefix). Never fails and never
/// panics: problems are recorded in `Mail::problems`.
pub fn parse_message(raw: &[u8], envelope: &Envelope) -> Mail {
    let _ = (raw, envelope);
    todo!("mail parser")
}
