//! `Event`: every decision the tracker makes, as written to the append-only ledger.
//!
//! Inquiry state is never stored directly: it is what you get by applying these events in order
//! (`Tracker::apply`). A restart replays the ledger to the same state, and an auditor reads the
//! same events to see why each number is what it is. Events are serialized as JSON with the
//! variant name in `"type"`; changing a field's meaning needs a new variant, never an edit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, InquiryId, Language};
use crate::tracker::alert::AlertKind;
use crate::tracker::instant;
use crate::tracker::observation::AckVia;
use crate::tracker::policy::PolicyRecord;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A policy version was used for the first time. Its parameters are kept so reports can show
    /// what was in force, whatever the configuration says today.
    PolicyActivated {
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        policy: PolicyRecord,
    },
    /// A customer message or call opened an inquiry; its clock runs from `received_at`.
    InquiryOpened(Box<InquiryOpened>),
    /// A message was seen but is not an inquiry, for the stored reason.
    InquiryExcluded(Box<InquiryExcluded>),
    /// Another customer message joined an inquiry; the clock keeps running from the oldest. The
    /// inquiry is open, or was answered after this message was delivered (read late).
    FollowUpAttached {
        inquiry_id: InquiryId,
        external_id: String,
        /// Empty when the message was recorded before (moved by an `InquiryMerged`).
        digest: String,
        #[serde(serialize_with = "instant::one")]
        received_at: DateTime<Utc>,
        /// When slawatch read it, who sent it and its subject: enough to open a next-reply
        /// inquiry from it if a reply written before it is read only afterwards.
        #[serde(serialize_with = "instant::one")]
        first_seen_at: DateTime<Utc>,
        customer: String,
        subject: String,
    },
    /// A message became part of a thread without opening or answering anything (a reply from
    /// the desk, an automatic acknowledgement, a forward to colleagues). Keeps the thread index.
    MessageLinked {
        external_id: String,
        digest: String,
        thread_id: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        role: LinkRole,
    },
    /// An inquiry got its first response.
    InquiryResponded(Box<InquiryResponded>),
    /// A message from the desk that answers nothing, and why. One that threads to messages not
    /// seen yet keeps its references: it answers the inquiry if that message arrives later
    /// (a quick reply can be read before the message it answers).
    ReplyUnmatched {
        external_id: String,
        digest: String,
        source: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        reason: UnmatchedReason,
        responder: String,
        references: Vec<String>,
        /// To and Cc addresses: a late-matched reply must still go to the customer.
        recipients: Vec<String>,
    },
    /// A warn instant of an open inquiry passed.
    InquiryWarned {
        inquiry_id: InquiryId,
        index: u8,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// The deadline of an open inquiry passed unanswered: counted `missed` now.
    InquiryBreached {
        inquiry_id: InquiryId,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// The daemon started watching (after replaying the ledger). With the heartbeats and
    /// [`Event::MonitorStopped`] it proves when the monitor was running: a report shows the
    /// gaps. These monitor events never change inquiry state.
    MonitorStarted {
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        version: String,
    },
    /// A replica took the leader lease of a shared (PostgreSQL) ledger and became the one that
    /// writes and alerts: recorded in its first commit, before [`Event::MonitorStarted`].
    /// `epoch` grows by one at every takeover and fences every older leader's writes;
    /// `previous` is the replica that held the lease before (none for the pair's first start).
    LeaderChanged {
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        epoch: i64,
        replica: String,
        previous: Option<String>,
    },
    /// The daemon was alive and its engine was writing at `at` (every few minutes; see
    /// `daemon::HEARTBEAT_EVERY`).
    MonitorHeartbeat {
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// The daemon stopped cleanly. A start without a stop before it means it crashed or was
    /// killed; the gap runs from the last heartbeat.
    MonitorStopped {
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// A source lost its server or folder (it was up before); `error_kind` is the last error
    /// kind it reported (the `kind` label of `source_errors_total`), or `unknown`.
    SourceDown {
        source: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        error_kind: String,
    },
    /// A source is working again after [`Event::SourceDown`].
    SourceUp {
        source: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// Evidence that contradicts other evidence (a reply delivered before the message it
    /// answers, a call picked up before it started): kept as it is, never dropped, and flagged
    /// here so the metrics and the report show it. The contradicted part decides nothing.
    EvidenceContradicted {
        source: String,
        /// The message or call record that contradicts.
        external_id: String,
        kind: Contradiction,
        detail: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// Evidence read later shows what kind of inquiry this is (DESIGN.md "Evidence order"): a
    /// customer message read before the older message of its conversation and the reply that
    /// answered it opened a `first` inquiry, which is a `next_reply` after all. Its clock and
    /// outcome stay as they are.
    InquiryReclassified {
        inquiry_id: InquiryId,
        kind: InquiryKind,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        /// The message whose reading showed it.
        evidence: String,
    },
    /// An inquiry turned out to be part of an older clock: a customer message delivered before
    /// it, read after it, in the same conversation (DESIGN.md "Evidence order"). Written just
    /// before the `InquiryOpened` of `into`, which takes over its messages (`FollowUpAttached`)
    /// and its response; the merged inquiry is no longer listed, and answers with `merged_into`.
    InquiryMerged {
        inquiry_id: InquiryId,
        into: InquiryId,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        /// The message whose reading caused it.
        evidence: String,
    },
    /// Evidence read after a decision changed it (DESIGN.md "Evidence order"): the ledger keeps
    /// the first decision, and this is the last word, with its reason and the evidence behind
    /// it. E.g. a breach fired at the deadline, then a reply delivered before the deadline was
    /// read: the inquiry's `sla` goes from `missed` to `met`.
    InquiryRevised {
        inquiry_id: InquiryId,
        /// When the revision was decided: the late evidence was read.
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        reason: RevisionReason,
        from: Outcome,
        to: Outcome,
        /// The message or call record whose reading caused it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<String>,
        /// The first response, when the revision moves it earlier (`earlier_response`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<Box<RevisedResponse>>,
    },
    /// A desk reply that replies to a message not read yet (its `In-Reply-To`): it waits for it,
    /// as a reply read before the message it answers does, even though it may have answered an
    /// older inquiry of the same conversation meanwhile.
    ReplyAwaiting {
        external_id: String,
        /// The messages it replies to that were not read yet.
        awaiting: Vec<String>,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        responder: String,
        recipients: Vec<String>,
    },
    /// A breached inquiry is still unanswered `renotify_every` after its last alert: the `n`-th
    /// re-notification (1-based, at most the policy's `renotify_max`). Decided by the engine.
    InquiryRenotified {
        inquiry_id: InquiryId,
        n: u32,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// A breached inquiry nobody took or answered within its rotation's `escalate_after`: its
    /// breach goes to the escalation list now (`level` 1). Decided by the engine; held while a
    /// take holds.
    InquiryEscalated {
        inquiry_id: InquiryId,
        level: u8,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// Someone took an open inquiry ("I'm on it"), from an alert's signed link or the API: until
    /// `until` re-notifications go to them only and escalation is held; after it, both resume
    /// unless it was answered. Taking is not a response: the clock, `sla` and the deadline
    /// counts are unchanged. A later take replaces an earlier one.
    InquiryTaken {
        inquiry_id: InquiryId,
        /// Who took it: an on-call person's name, or the name typed on a shared channel's form.
        by: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "instant::one")]
        until: DateTime<Utc>,
        /// How: `link` (a personal signed link), `shared_link` (a shared channel's link, the
        /// name typed in) or `api`.
        how: String,
    },
    /// The alert raised by an `InquiryWarned`/`InquiryBreached` (which is its intent: it is in the
    /// ledger before any delivery starts) was accepted by at least one notifier's server.
    AlertDelivered {
        inquiry_id: InquiryId,
        kind: AlertKind,
        /// The instant the alert is about: the `at` of its `InquiryWarned`/`InquiryBreached`.
        #[serde(serialize_with = "instant::one")]
        due_at: DateTime<Utc>,
        /// The notifiers that accepted it (primary and/or fallback).
        notifiers: Vec<String>,
        /// The on-call people it reached (names under `[notify.oncall.people]`); empty when it
        /// went to the notifiers' fixed destinations, and in ledgers older than routing.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recipients: Vec<String>,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// Every attempt at delivering the alert failed, fallback included. It stays pending: the
    /// next start-up sends it again.
    AlertFailed {
        inquiry_id: InquiryId,
        kind: AlertKind,
        #[serde(serialize_with = "instant::one")]
        due_at: DateTime<Utc>,
        error: String,
        /// The on-call people it did not reach (as in `AlertDelivered`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recipients: Vec<String>,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// The monitor cannot see or cannot tell: a source silent past its `silent_after`, the
    /// ledger not writable, a notifier failing past `retry_for`. An alert of its own, `alert` its
    /// id (`monitor-source-{name}`, `monitor-ledger`, `monitor-notifier-{name}`, never an
    /// inquiry's); one is raised per episode and stays active until
    /// [`Event::MonitorAlertResolved`]. Changes no inquiry.
    MonitorAlertRaised {
        alert: String,
        problem: MonitorProblem,
        /// The source or notifier concerned (`ledger` for the ledger).
        subject: String,
        /// What was seen, for the person paged (last error kind, for how long).
        detail: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// An active monitor alert nobody resolved within the default rotation's `escalate_after`
    /// went on to the escalation list (as an inquiry's breach does). Changes no inquiry.
    MonitorAlertEscalated {
        alert: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// The problem of an active [`Event::MonitorAlertRaised`] is over.
    MonitorAlertResolved {
        alert: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// A monitor alert (raised, `kind` = `breach`, or resolved) was accepted by at least one
    /// notifier's server: [`Event::AlertDelivered`] for the monitor's own alerts.
    MonitorAlertDelivered {
        alert: String,
        kind: AlertKind,
        #[serde(serialize_with = "instant::one")]
        due_at: DateTime<Utc>,
        notifiers: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recipients: Vec<String>,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// Every attempt at delivering a monitor alert failed: [`Event::AlertFailed`] for the
    /// monitor's own alerts.
    MonitorAlertFailed {
        alert: String,
        kind: AlertKind,
        #[serde(serialize_with = "instant::one")]
        due_at: DateTime<Utc>,
        error: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recipients: Vec<String>,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// A signed statement of the ledger's head: the row just before it is `head_seq` with hash
    /// `head_hash`, and `signature` is the Ed25519 signature of [`checkpoint_message`] over
    /// them, made with the ledger's signing key. The daemon appends one at the end of every
    /// commit when a key is configured. The core only carries the data: signing and checking
    /// belong to the daemon's store. Changes no inquiry.
    LedgerCheckpoint {
        head_seq: i64,
        head_hash: String,
        /// The first 16 hex digits of SHA-256 of the 32-byte public key: names the key.
        key_id: String,
        /// 64 bytes, lower-case hex.
        signature: String,
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
    },
    /// The daemon verified the ledger at start-up: rows `from_seq..=head_seq` were checked
    /// (`scope` says whether that was all of them), in `elapsed_ms`. `accepted_break` is set when
    /// the chain was broken and the daemon was told to run anyway (`--accept-broken-ledger`).
    LedgerVerified {
        #[serde(serialize_with = "instant::one")]
        at: DateTime<Utc>,
        scope: VerifyScope,
        from_seq: i64,
        head_seq: i64,
        head_hash: String,
        elapsed_ms: u64,
        /// Signed checkpoints whose signature was checked.
        checkpoints: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accepted_break: Option<AcceptedBreak>,
    },
}

/// The bytes a [`Event::LedgerCheckpoint`] signs:
/// `slawatch-ledger-checkpoint-v1` LF `{head_seq}` LF `{head_hash}` (LF is one 0x0a byte, no
/// trailing LF; `head_seq` in decimal, `head_hash` as its 64 lower-case hex characters).
pub fn checkpoint_message(head_seq: i64, head_hash: &str) -> String {
    format!("{CHECKPOINT_DOMAIN}\n{head_seq}\n{head_hash}")
}

/// The first line of [`checkpoint_message`]: a signature over it means nothing else.
pub const CHECKPOINT_DOMAIN: &str = "slawatch-ledger-checkpoint-v1";

/// How much of the ledger a start-up verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyScope {
    /// Every row from seq 1.
    Full,
    /// The rows after the last checkpoint a previous verification covered.
    SinceCheckpoint,
    /// The rows after the working-set snapshot start-up resumed from (`from_seq` is the first).
    SinceSnapshot,
}

/// A broken link the daemon was told to run on, as found at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedBreak {
    pub seq: i64,
    pub problem: String,
}

/// What a monitor alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorProblem {
    /// No successful poll, IDLE round or file check for longer than `silent_after`.
    SourceSilent,
    /// The ledger refused or stalled its writes for longer than a few seconds.
    LedgerNotWritable,
    /// A notifier gave up on alerts after `retry_for`.
    NotifierFailing,
}

impl MonitorProblem {
    pub const ALL: [MonitorProblem; 3] = [
        MonitorProblem::SourceSilent,
        MonitorProblem::LedgerNotWritable,
        MonitorProblem::NotifierFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MonitorProblem::SourceSilent => "source_silent",
            MonitorProblem::LedgerNotWritable => "ledger_not_writable",
            MonitorProblem::NotifierFailing => "notifier_failing",
        }
    }

    /// The id of the monitor alert about `subject` (a source or notifier name).
    pub fn alert_id(self, subject: &str) -> String {
        match self {
            MonitorProblem::SourceSilent => format!("monitor-source-{subject}"),
            MonitorProblem::LedgerNotWritable => "monitor-ledger".to_string(),
            MonitorProblem::NotifierFailing => format!("monitor-notifier-{subject}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InquiryOpened {
    pub inquiry_id: InquiryId,
    pub channel: Channel,
    pub source: String,
    /// Message-ID or call id of the message or call that opened it.
    pub external_id: String,
    pub thread_id: String,
    /// Header digest of the message (dedupes re-fetches); none for calls.
    pub digest: Option<String>,
    /// The customer key: an email address or an E.164 number.
    pub customer: String,
    pub customer_name: Option<String>,
    pub subject: String,
    pub language: Language,
    pub language_source: LanguageSource,
    #[serde(serialize_with = "instant::one")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "instant::one")]
    pub first_seen_at: DateTime<Utc>,
    /// The sender's own `Date:`, recorded only.
    #[serde(serialize_with = "instant::maybe")]
    pub date_header: Option<DateTime<Utc>>,
    #[serde(serialize_with = "instant::one")]
    pub deadline_at: DateTime<Utc>,
    /// The customer's `Reply-To` addresses: a reply to them answers too.
    pub reply_to: Vec<String>,
    /// One instant per configured warn offset, in order.
    #[serde(serialize_with = "instant::many")]
    pub warn_at: Vec<DateTime<Utc>>,
    /// Version of the policy in force when it opened.
    pub policy: String,
    pub kind: InquiryKind,
    /// What the call that opened a phone inquiry tells beyond the common fields; absent for
    /// mail (and in ledgers written before it existed, which read as `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallDetails>,
}

/// The facts of the call that opened a phone inquiry, kept as data for the API and reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallDetails {
    /// The configured support line or queue it came in on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// When the caller entered a queue. `received_at` is when the call reached the phone
    /// system: the gap is menu/IVR time, and the queue wait runs from here to the pickup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "instant::maybe")]
    pub queue_entered_at: Option<DateTime<Utc>>,
    /// The caller withheld the number: nobody can call back, so such inquiries are reported
    /// in a bucket of their own.
    #[serde(default)]
    pub withheld: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InquiryExcluded {
    pub inquiry_id: InquiryId,
    pub channel: Channel,
    pub source: String,
    pub external_id: String,
    pub thread_id: String,
    pub digest: Option<String>,
    pub customer: String,
    pub customer_name: Option<String>,
    pub subject: String,
    pub language: Language,
    #[serde(serialize_with = "instant::one")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "instant::one")]
    pub first_seen_at: DateTime<Utc>,
    pub reason: ExclusionReason,
    /// Human-readable evidence, e.g. the header that decided it (`Auto-Submitted: auto-replied`).
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InquiryResponded {
    pub inquiry_id: InquiryId,
    /// When the customer was answered.
    #[serde(serialize_with = "instant::one")]
    pub at: DateTime<Utc>,
    /// `at - received_at`, in whole seconds (never negative).
    pub response_seconds: i64,
    pub kind: ResponseKind,
    /// Who answered: the desk address that sent the reply, or the person who acked.
    pub responder: String,
    /// Message-ID or call id of the response, when there is one.
    pub external_id: Option<String>,
    /// `met` if answered by the deadline and the deadline had not been counted as missed.
    pub outcome: Outcome,
    pub via: Option<AckVia>,
    pub note: Option<String>,
}

/// First inquiry of a conversation, or a customer message after the desk had replied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InquiryKind {
    First,
    NextReply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LanguageSource {
    Header,
    Text,
    Line,
    /// Inherited from the conversation (a next reply opened from a message already read).
    Thread,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseKind {
    Email,
    Phone,
    Manual,
}

impl ResponseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseKind::Email => "email",
            ResponseKind::Phone => "phone",
            ResponseKind::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Met,
    Missed,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Met, Outcome::Missed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Met => "met",
            Outcome::Missed => "missed",
        }
    }
}

/// The first response of an inquiry as a revision sets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisedResponse {
    #[serde(serialize_with = "instant::one")]
    pub at: DateTime<Utc>,
    pub response_seconds: i64,
    pub kind: ResponseKind,
    pub responder: String,
}

/// How evidence contradicts other evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Contradiction {
    /// A reply delivered (server time) before the message it replies to.
    ReplyBeforeMessage,
    /// A call picked up before it started.
    AnsweredBeforeStart,
}

impl Contradiction {
    pub fn as_str(self) -> &'static str {
        match self {
            Contradiction::ReplyBeforeMessage => "reply_before_message",
            Contradiction::AnsweredBeforeStart => "answered_before_start",
        }
    }
}

/// Why a decision was revised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisionReason {
    /// The breach fired before the evidence was read that shows a response at or before the
    /// deadline (a reply fetched late, a call record written at hangup, a manual ack with an
    /// earlier time).
    AnsweredBeforeDeadline,
    /// A response sent before the one recorded, read after it: it is the first response.
    EarlierResponse,
}

impl RevisionReason {
    pub const ALL: [RevisionReason; 2] = [
        RevisionReason::AnsweredBeforeDeadline,
        RevisionReason::EarlierResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RevisionReason::AnsweredBeforeDeadline => "answered_before_deadline",
            RevisionReason::EarlierResponse => "earlier_response",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRole {
    /// A reply to the customer (it may also have answered inquiries: see `InquiryResponded`).
    Reply,
    /// The desk's automatic acknowledgement: never stops the clock.
    AutoAcknowledgement,
    /// Sent only to colleagues.
    InternalForward,
    /// Sent to someone outside the desk who is not the customer (e.g. forwarded to a supplier).
    Forward,
    /// A customer message in a thread that opens nothing (e.g. next-reply tracking is off).
    CustomerMessage,
}

/// Why a desk message answered nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmatchedReason {
    /// No `In-Reply-To`/`References`: it cannot be tied to any inquiry.
    NotThreaded,
    /// It threads to messages slawatch has not seen (yet); kept in case they arrive.
    UnknownThread,
    /// Its sender is not a support address.
    NotFromSupport,
    /// An outbound call to a number with no open inquiry (an unrelated call).
    CallbackUnrelated,
    /// An outbound call to an open inquiry's number that did not connect to a person.
    CallbackNotConnected,
}

impl UnmatchedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnmatchedReason::NotThreaded => "not_threaded",
            UnmatchedReason::UnknownThread => "unknown_thread",
            UnmatchedReason::NotFromSupport => "not_from_support",
            UnmatchedReason::CallbackUnrelated => "callback_unrelated",
            UnmatchedReason::CallbackNotConnected => "callback_not_connected",
        }
    }
}

/// Why a message is not an inquiry. The code is stored, reported and used as the `reason`
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    /// `Auto-Submitted` other than `no` (RFC 3834).
    AutoSubmitted,
    /// A vendor auto-reply header (`X-Autoreply` and kin).
    AutoReply,
    /// `Precedence: bulk|list|junk`.
    Precedence,
    /// A bounce or delivery status notification.
    Bounce,
    /// `List-Id` / `List-Unsubscribe`.
    MailingList,
    /// `X-Loop`.
    MailLoop,
    /// Flagged as spam by the mail system.
    Spam,
    /// Sent from one of the desk's own domains or addresses.
    InternalSender,
    /// Matched a configured ignore list.
    Ignored,
    /// One of slawatch's own alert mails that came back.
    OwnAlert,
    /// No usable sender address: nobody could be answered.
    NoSender,
    /// A call between two of the desk's own extensions.
    InternalCall,
    /// A call to a number or queue that is not a configured support line.
    NotSupportLine,
    /// A call from a withheld number, excluded by configuration (nobody can call back).
    WithheldNumber,
    /// An Exchange out-of-office reply without `Auto-Submitted` (older Exchange): an
    /// automatic-reply subject prefix over the conversation's own `Thread-Topic`, from Exchange.
    OutOfOffice,
    /// A machine-generated marker (`X-FC-Machinegenerated: true`).
    MachineGenerated,
    /// Another helpdesk's automatic mail, by its loop marker (`X-OTRS-Loop: yes`,
    /// `X-RT-Loop-Prevention` on an `AutoReply:`).
    HelpdeskLoop,
}

impl ExclusionReason {
    pub const ALL: [ExclusionReason; 17] = [
        ExclusionReason::AutoSubmitted,
        ExclusionReason::AutoReply,
        ExclusionReason::Precedence,
        ExclusionReason::Bounce,
        ExclusionReason::MailingList,
        ExclusionReason::MailLoop,
        ExclusionReason::Spam,
        ExclusionReason::InternalSender,
        ExclusionReason::Ignored,
        ExclusionReason::OwnAlert,
        ExclusionReason::NoSender,
        ExclusionReason::InternalCall,
        ExclusionReason::NotSupportLine,
        ExclusionReason::WithheldNumber,
        ExclusionReason::OutOfOffice,
        ExclusionReason::MachineGenerated,
        ExclusionReason::HelpdeskLoop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionReason::AutoSubmitted => "auto_submitted",
            ExclusionReason::AutoReply => "auto_reply",
            ExclusionReason::Precedence => "precedence",
            ExclusionReason::Bounce => "bounce",
            ExclusionReason::MailingList => "mailing_list",
            ExclusionReason::MailLoop => "mail_loop",
            ExclusionReason::Spam => "spam",
            ExclusionReason::InternalSender => "internal_sender",
            ExclusionReason::Ignored => "ignored",
            ExclusionReason::OwnAlert => "own_alert",
            ExclusionReason::NoSender => "no_sender",
            ExclusionReason::InternalCall => "internal_call",
            ExclusionReason::NotSupportLine => "not_support_line",
            ExclusionReason::WithheldNumber => "withheld_number",
            ExclusionReason::OutOfOffice => "out_of_office",
            ExclusionReason::MachineGenerated => "machine_generated",
            ExclusionReason::HelpdeskLoop => "helpdesk_loop",
        }
    }
}

impl Event {
    /// The variant name as stored in the ledger's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PolicyActivated { .. } => "policy_activated",
            Event::InquiryOpened(_) => "inquiry_opened",
            Event::InquiryExcluded(_) => "inquiry_excluded",
            Event::FollowUpAttached { .. } => "follow_up_attached",
            Event::MessageLinked { .. } => "message_linked",
            Event::InquiryResponded(_) => "inquiry_responded",
            Event::ReplyUnmatched { .. } => "reply_unmatched",
            Event::InquiryWarned { .. } => "inquiry_warned",
            Event::InquiryBreached { .. } => "inquiry_breached",
            Event::MonitorStarted { .. } => "monitor_started",
            Event::LeaderChanged { .. } => "leader_changed",
            Event::MonitorHeartbeat { .. } => "monitor_heartbeat",
            Event::MonitorStopped { .. } => "monitor_stopped",
            Event::SourceDown { .. } => "source_down",
            Event::SourceUp { .. } => "source_up",
            Event::InquiryRevised { .. } => "inquiry_revised",
            Event::InquiryMerged { .. } => "inquiry_merged",
            Event::InquiryReclassified { .. } => "inquiry_reclassified",
            Event::EvidenceContradicted { .. } => "evidence_contradicted",
            Event::ReplyAwaiting { .. } => "reply_awaiting",
            Event::InquiryRenotified { .. } => "inquiry_renotified",
            Event::InquiryTaken { .. } => "inquiry_taken",
            Event::InquiryEscalated { .. } => "inquiry_escalated",
            Event::AlertDelivered { .. } => "alert_delivered",
            Event::AlertFailed { .. } => "alert_failed",
            Event::MonitorAlertRaised { .. } => "monitor_alert_raised",
            Event::MonitorAlertResolved { .. } => "monitor_alert_resolved",
            Event::MonitorAlertEscalated { .. } => "monitor_alert_escalated",
            Event::MonitorAlertDelivered { .. } => "monitor_alert_delivered",
            Event::MonitorAlertFailed { .. } => "monitor_alert_failed",
            Event::LedgerCheckpoint { .. } => "ledger_checkpoint",
            Event::LedgerVerified { .. } => "ledger_verified",
        }
    }

    /// The inquiry the event is about, if any (indexed in the ledger).
    pub fn inquiry_id(&self) -> Option<&InquiryId> {
        match self {
            Event::InquiryOpened(e) => Some(&e.inquiry_id),
            Event::InquiryExcluded(e) => Some(&e.inquiry_id),
            Event::InquiryResponded(e) => Some(&e.inquiry_id),
            Event::FollowUpAttached { inquiry_id, .. }
            | Event::InquiryWarned { inquiry_id, .. }
            | Event::InquiryBreached { inquiry_id, .. }
            | Event::InquiryRenotified { inquiry_id, .. }
            | Event::InquiryTaken { inquiry_id, .. }
            | Event::InquiryEscalated { inquiry_id, .. }
            | Event::InquiryRevised { inquiry_id, .. }
            | Event::InquiryMerged { inquiry_id, .. }
            | Event::InquiryReclassified { inquiry_id, .. }
            | Event::AlertDelivered { inquiry_id, .. }
            | Event::AlertFailed { inquiry_id, .. } => Some(inquiry_id),
            Event::PolicyActivated { .. }
            | Event::MessageLinked { .. }
            | Event::ReplyUnmatched { .. }
            | Event::ReplyAwaiting { .. }
            | Event::EvidenceContradicted { .. }
            | Event::MonitorStarted { .. }
            | Event::LeaderChanged { .. }
            | Event::MonitorHeartbeat { .. }
            | Event::MonitorStopped { .. }
            | Event::SourceDown { .. }
            | Event::SourceUp { .. }
            | Event::MonitorAlertRaised { .. }
            | Event::MonitorAlertResolved { .. }
            | Event::MonitorAlertEscalated { .. }
            | Event::MonitorAlertDelivered { .. }
            | Event::MonitorAlertFailed { .. }
            | Event::LedgerCheckpoint { .. }
            | Event::LedgerVerified { .. } => None,
        }
    }
}
