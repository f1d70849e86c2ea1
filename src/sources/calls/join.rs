//! Joining a CDR written without uniqueid (`cdr.conf` `[csv]` empty: Asterisk's compiled-in
//! 16 columns, or `loguserfield` only) to the queue_log records of the same call.
//!
//! Such a row has no id the queue_log shares, so its call id is `cdr:<src>@<start epoch>`. The
//! queue_log's call id is the caller channel's uniqueid, whose integer part is the epoch the
//! channel was created: the CDR's `start`. A record joins the one call tracked from another feed
//! with the same customer number whose epoch is within [`JOIN_TOLERANCE_SECONDS`] of its own,
//! whichever feed was read first: it then takes that call's id. Two or more such calls are
//! ambiguous: the record is neither merged into one of them nor tracked as a call of its own
//! (which would double one of them); it is counted and reported instead. Withheld callers join
//! on the time alone (their key is `withheld`): two withheld calls within the tolerance are
//! ambiguous. Pure: reads the tracker, changes nothing.

use chrono::{DateTime, TimeDelta, Utc};
use slawatch_core::domain::{Channel, InquiryId};
use slawatch_core::tracker::Tracker;
use slawatch_core::tracker::observation::{Call, Observation};

use super::cdr_csv::uniqueid_epoch;

/// How far a CDR's start may be from the queue_log uniqueid's epoch (clock rounding, the
/// channel created a moment before the CDR starts).
pub const JOIN_TOLERANCE_SECONDS: i64 = 2;

/// The call-id prefix of a CDR row without uniqueid.
pub const NO_UNIQUEID_PREFIX: &str = "cdr:";

/// What a CDR row without uniqueid joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// Not a row without uniqueid, or no call of another feed matches: tracked as it is.
    Alone,
    /// Exactly one call matches: the row takes its call id.
    Call(String),
    /// Several calls match: the call ids, for the report.
    Ambiguous(Vec<String>),
}

/// The call of an observation, if it is one.
pub fn call_mut(o: &mut Observation) -> Option<&mut Call> {
    match o {
        Observation::CallStarted(c) | Observation::CallAnswered(c) | Observation::CallEnded(c) => {
            Some(c)
        }
        _ => None,
    }
}

/// Reads the epoch out of a call id of one kind.
type EpochOf = fn(&str) -> Option<DateTime<Utc>>;

/// The epoch of a CDR-without-uniqueid call id (`cdr:<src>@<epoch>`).
fn no_uniqueid_epoch(id: &str) -> Option<DateTime<Utc>> {
    let rest = id.strip_prefix(NO_UNIQUEID_PREFIX)?;
    let (_, epoch) = rest.rsplit_once('@')?;
    DateTime::from_timestamp(epoch.parse().ok()?, 0)
}

/// Looks for the call of another feed that this call is: for a CDR row without uniqueid, a
/// queue_log call whose uniqueid epoch is within the tolerance of the row's start; for a call
/// with a uniqueid (queue_log), a CDR-without-uniqueid call already tracked (the CDR read first).
pub fn join(tracker: &Tracker, call: &Call) -> Join {
    // Only a call read from another feed can match: with one call source (or before another
    // has read anything) there is nothing to walk.
    if !tracker.lists_calls_from_other_sources(&call.source) {
        return Join::Alone;
    }
    let (at, wanted): (DateTime<Utc>, EpochOf) = if let Some(at) = no_uniqueid_epoch(&call.call_id)
    {
        (at, uniqueid_epoch)
    } else if let Some(at) = uniqueid_epoch(&call.call_id) {
        (at, no_uniqueid_epoch)
    } else {
        return Join::Alone;
    };
    let tolerance = TimeDelta::seconds(JOIN_TOLERANCE_SECONDS);
    // An inquiry's arrival is at or before its call's epoch (the IVR precedes the queue); a
    // minute of slack bounds the walk.
    let slack = TimeDelta::minutes(1);
    let customer = call.number.key();
    // Seek to the newest inquiry received by `at + tolerance` (the smallest id sorts first):
    // walking down from the newest would cost every inquiry received since, per call record.
    // The bounds are computed once, not per inquiry passed.
    let bound = at + tolerance + TimeDelta::nanoseconds(1);
    let oldest = at - tolerance - slack;
    let mut found: Vec<String> = tracker
        .newest_before(bound, &InquiryId::from_display(""))
        .take_while(|i| i.received_at >= oldest)
        .filter(|i| i.channel == Channel::Phone && *i.source != *call.source)
        .filter(|i| *i.customer == *customer)
        .filter_map(|i| i.external_id.strip_prefix("call:"))
        .filter(|id| *id != call.call_id)
        .filter(|id| wanted(id).is_some_and(|t| (t - at).abs() <= tolerance))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    match found.len() {
        0 => Join::Alone,
        1 => Join::Call(found.remove(0)),
        _ => Join::Ambiguous(found),
    }
}
