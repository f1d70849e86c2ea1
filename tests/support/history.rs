//! A busy desk's history written flat out into a ledger, for benchmarks over years of it: one
//! inquiry every 30 seconds (a million a year) ending now. Two in three are mail (each its own
//! conversation, answered by a reply linked into it), one in three calls, each from a number of
//! its own, or with `callers` from that many numbers that call again and again (a number is one
//! thread: a call brings its caller's history back from the archive). Nineteen in twenty are
//! answered in time; the twentieth breaches, its alert is delivered, and it is answered late.
//! The last `open` inquiries are still waiting.

use chrono::{DateTime, Duration, Utc};
use slawatch::notify::AlertKind;
use slawatch::store::{Store, StoreError};
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::event::{
    Event, InquiryKind, InquiryOpened, InquiryResponded, LanguageSource, LinkRole, Outcome,
    ResponseKind,
};
use slawatch_core::tracker::policy::Policy;

/// Events per commit.
const BATCH: usize = 5_000;

/// The events of inquiry `i` of a history that starts at `start`; `open`: left unanswered.
pub fn inquiry(
    i: usize,
    start: DateTime<Utc>,
    policy: &str,
    open: bool,
    callers: Option<usize>,
    out: &mut Vec<Event>,
) {
    let received = start + Duration::seconds(i as i64 * 30);
    let phone = i.is_multiple_of(3);
    let (channel, external_id, thread_id, customer) = if phone {
        let caller = callers.map_or(i / 3, |n| (i / 3) % n.max(1));
        let number = format!("+346{caller:08}");
        (
            Channel::Phone,
            format!("call:{i}"),
            format!("tel:{number}"),
            number,
        )
    } else {
        let id = format!("<m{i}@customer.example>");
        (
            Channel::Email,
            id.clone(),
            id,
            format!("customer{}@example.com", i % 50_000),
        )
    };
    let id = InquiryId::derive(channel, &external_id);
    out.push(Event::InquiryOpened(Box::new(InquiryOpened {
        inquiry_id: id.clone(),
        channel,
        source: if phone { "pbx" } else { "mail" }.into(),
        external_id: external_id.clone(),
        thread_id: thread_id.clone(),
        digest: (!phone).then(|| format!("{i:064x}")),
        customer,
        customer_name: None,
        subject: "استفسار عن الفاتورة / Consulta sobre la factura".into(),
        language: Language::ALL[i % 3],
        language_source: LanguageSource::Text,
        reply_to: Vec::new(),
        received_at: received,
        first_seen_at: received + Duration::seconds(2),
        date_header: None,
        deadline_at: received + Duration::minutes(15),
        warn_at: vec![received + Duration::minutes(10)],
        policy: policy.into(),
        kind: InquiryKind::First,
        call: None,
    })));
    if open {
        return;
    }
    let reply = format!("<r{i}@desk.example>");
    let respond = |after: i64, outcome| {
        Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: id.clone(),
            at: received + Duration::seconds(after),
            response_seconds: after,
            kind: if phone {
                ResponseKind::Phone
            } else {
                ResponseKind::Email
            },
            responder: "support@desk.example".into(),
            external_id: Some(if phone {
                external_id.clone()
            } else {
                reply.clone()
            }),
            outcome,
            via: None,
            note: None,
        }))
    };
    let answered_after = if i.is_multiple_of(20) {
        let due = received + Duration::minutes(15);
        out.push(Event::InquiryBreached {
            inquiry_id: id.clone(),
            at: due,
        });
        out.push(Event::AlertDelivered {
            inquiry_id: id.clone(),
            kind: AlertKind::Breach,
            due_at: due,
            notifiers: vec!["smtp".into()],
            recipients: vec!["oncall@desk.example".into()],
            at: due + Duration::seconds(2),
        });
        out.push(respond(1_800 + (i % 600) as i64, Outcome::Missed));
        1_800 + (i % 600) as i64
    } else {
        out.push(respond(30 + (i % 850) as i64, Outcome::Met));
        30 + (i % 850) as i64
    };
    if !phone {
        out.push(Event::MessageLinked {
            external_id: reply,
            digest: format!("{:064x}", i + (1 << 40)),
            thread_id,
            at: received + Duration::seconds(answered_after),
            role: LinkRole::Reply,
        });
    }
    if i.is_multiple_of(10) {
        out.push(Event::MonitorHeartbeat { at: received });
    }
}

/// Writes `n` inquiries ending about now (the last `open` unanswered) into `store`.
pub async fn write(
    store: &Store,
    n: usize,
    open: usize,
    callers: Option<usize>,
) -> Result<(), StoreError> {
    let policy = Policy::default();
    let start = Utc::now() - Duration::seconds(n as i64 * 30);
    let mut batch = vec![
        Event::MonitorStarted {
            at: start - Duration::days(1),
            version: "bench".into(),
        },
        Event::PolicyActivated {
            at: start,
            policy: policy.record(),
        },
    ];
    for i in 0..n {
        inquiry(
            i,
            start,
            &policy.version(),
            i + open >= n,
            callers,
            &mut batch,
        );
        if batch.len() >= BATCH {
            store.append(Utc::now(), &batch, &[]).await?;
            batch.clear();
        }
        if (i + 1).is_multiple_of(50_000) {
            super::ledger::checkpoint(store).await;
        }
    }
    store.append(Utc::now(), &batch, &[]).await?;
    super::ledger::checkpoint(store).await;
    Ok(())
}
