//! `Observation`: the one typed input of the tracker.
//!
//! Sources turn whatever they read (IMAP fetches, Maildir files, call logs, API requests) into
//! observations; the scheduler turns passing instants into `DeadlineReached`. The tracker never
//! sees bytes or sockets, only these facts, so every SLA rule can be tested on plain values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::InquiryId;

/// Everything the tracker can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Observation {
    /// A message arrived in a watched inbox folder.
    MessageReceived(Mail),
    /// A message was found in a watched sent folder (a possible response).
    MessageSent(Mail),
    /// Someone acknowledged an inquiry by hand (CLI or API), e.g. after answering by phone.
    ManualAck(ManualAck),
    /// The scheduler says an inquiry's warn or breach instant has passed.
    DeadlineReached { inquiry_id: InquiryId, stage: Stage },
    /// A call reached the phone system (queue entry, a call record without a pickup).
    CallStarted(Call),
    /// A person picked up: an agent answered an inbound call, or an outbound call connected.
    CallAnswered(Call),
    /// A call ended without a human pickup (missed, abandoned, voicemail, busy, failed).
    CallEnded(Call),
}

/// Which deadline of an inquiry an instant belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "stage", content = "index")]
pub enum Stage {
    /// The n-th configured warn offset (0-based).
    Warning(u8),
    /// The response target itself.
    Breach,
}

/// A manual acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualAck {
    pub inquiry_id: InquiryId,
    /// Who answered the customer.
    pub by: String,
    /// How: `phone`, `email` or `other`.
    pub via: AckVia,
    /// When the customer was answered (defaults to the moment of the ack).
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckVia {
    Phone,
    Email,
    Other,
}

impl AckVia {
    pub fn parse(s: &str) -> Option<AckVia> {
        match s {
            "phone" => Some(AckVia::Phone),
            "email" => Some(AckVia::Email),
            "other" => Some(AckVia::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AckVia::Phone => "phone",
            AckVia::Email => "email",
            AckVia::Other => "other",
        }
    }
}

/// The facts about one mail message that SLA rules need, extracted by the pure mail parser
/// (`sources::mail::parse_message`). Addresses are lower-cased; message ids keep their angle
/// brackets (`<id@host>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Mail {
    /// Name of the configured source that saw the message.
    pub source: String,
    /// Folder (IMAP mailbox or Maildir directory) it was found in.
    pub folder: String,
    /// The `Message-ID`, or a synthetic `<sha256…@synthetic.slawatch.invalid>` derived from the
    /// header bytes when the message has none.
    pub message_id: String,
    pub message_id_synthetic: bool,
    /// sha256 hex of the header block (up to and including the first empty line): tells a
    /// re-fetch of the same message from a different message that reuses a Message-ID, and is the
    /// same whether the body was fetched whole, truncated or not at all.
    pub digest: String,
    /// Server delivery time (IMAP INTERNALDATE, Maildir delivery time): the received time.
    pub delivered_at: DateTime<Utc>,
    /// When slawatch first read it.
    pub seen_at: DateTime<Utc>,
    /// The sender's `Date:` header, recorded only (clocks of senders lie).
    pub date_header: Option<DateTime<Utc>>,
    pub from: Option<Address>,
    pub sender: Option<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub subject: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Signals of automatic or non-customer mail; see `AutomationSignals`.
    pub signals: AutomationSignals,
    /// `Content-Language`, raw.
    pub content_language: Option<String>,
    /// Subject plus the first lines of the text body with quoted lines removed, for language
    /// detection and alert previews (bounded, a few hundred characters).
    pub text_sample: String,
    /// Problems met while parsing (the message is still tracked); counted per kind in
    /// `slawatch_source_errors_total{kind}`.
    pub problems: Vec<ParseProblem>,
}

/// A mailbox address with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Address {
    pub name: Option<String>,
    /// Lower-cased `local@domain`.
    pub email: String,
}

impl Address {
    pub fn domain(&self) -> &str {
        self.email.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }

    /// `Name <addr>` or `addr`.
    pub fn display(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("{n} <{}>", self.email),
            _ => self.email.clone(),
        }
    }
}

/// Header signals that decide whether a message is automatic, bulk, a bounce or our own alert.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AutomationSignals {
    /// `Auto-Submitted` value, lower-cased and trimmed (RFC 3834; `no` means a person).
    pub auto_submitted: Option<String>,
    /// `Precedence` or `X-Precedence`, lower-cased.
    pub precedence: Option<String>,
    /// `List-Id` or `List-Unsubscribe` present.
    pub list_header: bool,
    /// `X-Loop` present.
    pub x_loop: bool,
    /// `Return-Path` value as written (`Some("")` for the null path `<>`).
    pub return_path: Option<String>,
    /// `multipart/report; report-type=delivery-status` (a DSN) anywhere at the top level.
    pub delivery_status_report: bool,
    /// `X-Failed-Recipients` present.
    pub failed_recipients: bool,
    /// `X-Spam-Flag: YES` or `X-Spam-Status: Yes…`.
    pub spam_flag: bool,
    /// A vendor auto-reply header (`X-Autoreply`, `X-Autorespond`, `X-Autoresponse`,
    /// `X-AutoReply-From`, `X-Mail-Autoreply`, `X-Autogenerated: Reply`): its name.
    pub vendor_autoreply: Option<String>,
    /// `X-Auto-Response-Suppress` present: a request, not a sign of automation (kept for the
    /// record only).
    pub auto_response_suppress: bool,
    /// `X-Slawatch-Alert` present: one of our own alert mails.
    pub slawatch_alert: bool,
    /// A machine-generated marker other helpdesks honour (`X-FC-Machinegenerated: true`, as
    /// Request Tracker checks): the evidence.
    #[serde(default)]
    pub machine_generated: Option<String>,
    /// Another helpdesk's loop marker (`X-OTRS-Loop: yes|true`, `X-RT-Loop-Prevention` on an
    /// `AutoReply:`): the evidence.
    #[serde(default)]
    pub helpdesk_loop: Option<String>,
    /// `Thread-Topic` (Exchange/Outlook): the conversation's subject without any prefix.
    #[serde(default)]
    pub thread_topic: Option<String>,
    /// Some `X-MS-Exchange-*` header is present: the message passed through Exchange.
    #[serde(default)]
    pub exchange_headers: bool,
}

/// A non-fatal problem with a message's bytes. The message is still tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseProblem {
    /// No `Message-ID`: a synthetic id was derived.
    MissingMessageId,
    /// The MIME structure could not be parsed; only headers were used.
    MalformedMime,
    /// A charset slawatch cannot decode; text was decoded lossily.
    UnknownCharset,
    /// Header bytes that are not valid in their charset.
    InvalidHeaderBytes,
    /// `Date:` unparseable or more than a day away from the delivery time.
    DateSkew,
    /// No usable `From:` address.
    MissingFrom,
}

impl ParseProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseProblem::MissingMessageId => "missing_message_id",
            ParseProblem::MalformedMime => "malformed_mime",
            ParseProblem::UnknownCharset => "unknown_charset",
            ParseProblem::InvalidHeaderBytes => "invalid_header_bytes",
            ParseProblem::DateSkew => "date_skew",
            ParseProblem::MissingFrom => "missing_from",
        }
    }
}

/// The facts about one call record that the phone rules need, from a call log (CDR, queue_log,
/// Twilio, generic CSV) or a pushed event. Times are UTC; numbers are normalised by the source
/// with the default region of the line (`sources::calls::number`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Name of the configured source.
    pub source: String,
    /// The whole call's id: every record of one call shares it (Asterisk `linkedid`, else the
    /// caller channel's `uniqueid`; Twilio parent `sid`).
    pub call_id: String,
    /// This record's own stable id (uniqueid+sequence, file line, child `sid`).
    pub record_id: String,
    pub direction: CallDirection,
    /// The customer's number: the caller of an inbound call, the callee of an outbound one.
    pub number: crate::phone_number::CallerNumber,
    /// Caller name, when the phone system has one.
    pub name: Option<String>,
    /// The support line or queue it came in on (configured name), if any.
    pub line: Option<String>,
    /// Language of that line or queue.
    pub language: Option<crate::domain::Language>,
    /// When the call reached the phone system: the received time.
    pub started_at: DateTime<Utc>,
    /// When it entered a queue (the gap to `started_at` is IVR time), if known.
    pub queue_entered_at: Option<DateTime<Utc>>,
    /// Human pickup (inbound) or connection (outbound).
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The agent (member, extension, channel) who answered or called.
    pub agent: Option<String>,
    pub outcome: CallOutcome,
    /// When slawatch read it.
    pub seen_at: DateTime<Utc>,
    /// Set by the source when this call is not an inquiry, with the reason.
    pub ignore: Option<CallIgnore>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    Inbound,
    Outbound,
}

/// How a call record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Still running (queued, ringing): no outcome yet.
    InProgress,
    /// A person answered.
    Answered,
    /// Answered by a machine (IVR, voicemail system, answering machine): not a response.
    AnsweredByMachine,
    /// Rang, nobody answered (also a queue member that did not pick up).
    NoAnswer,
    /// The caller hung up while waiting.
    Abandoned,
    /// Left in (or sent to) voicemail.
    Voicemail,
    Busy,
    Failed,
    /// A disposition or event slawatch does not know: recorded, never a crash.
    Unknown,
}

/// Why a call is not an inquiry; decided by the source from its line configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallIgnore {
    /// Between two extensions of the desk.
    Internal,
    /// Inbound to a number or queue that is not a configured support line.
    NotSupportLine,
    /// The caller withheld the number and the configuration excludes such calls.
    Withheld,
}
