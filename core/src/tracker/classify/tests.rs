//! Classification tests, on parsed fixtures where practical.

use chrono::TimeZone;

use super::*;
use crate::domain::Language;
use crate::mail::{Envelope, parse_complete_message};
use crate::tracker::observation::Address;

fn desk() -> DeskSettings {
    DeskSettings {
        support_addresses: vec![
            "support@example.com".into(),
            "soporte@example.com".into(),
            "daam@example.com".into(),
        ],
        internal_domains: vec!["example.com".into()],
        ignore_senders: vec!["robot@ignored.example".into(), "@noise.example".into()],
        ignore_subjects: vec!["Test ticket".into()],
        auto_ack_subjects: vec!["Auto: ".into()],
        default_language: Language::En,
        time_zone: chrono_tz::UTC,
    }
}

fn parse(raw: &[u8]) -> Mail {
    let at = chrono::Utc
        .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .unwrap();
    parse_complete_message(
        raw,
        &Envelope {
            source: "mail".into(),
            folder: "INBOX".into(),
            delivered_at: at,
            seen_at: at,
        },
    )
}

macro_rules! fixture {
    ($name:literal) => {
        parse(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mail/",
            $name
        )))
    };
}

fn reason(mail: &Mail) -> Option<ExclusionReason> {
    classify_inbound(mail, &desk()).map(|e| e.reason)
}

fn customer() -> Mail {
    fixture!("plain_en.eml")
}

#[test]
fn customers_are_inquiries() {
    for m in [
        fixture!("plain_en.eml"),
        fixture!("spanish_latin1.eml"),
        fixture!("arabic_1256.eml"),
        fixture!("missing_message_id.eml"),
        fixture!("garbage_header.eml"),
        fixture!("reply_threaded.eml"),
    ] {
        assert_eq!(classify_inbound(&m, &desk()), None, "{}", m.subject);
    }
}

#[test]
fn x_auto_response_suppress_alone_never_excludes() {
    let m = fixture!("outlook_suppress.eml");
    assert!(m.signals.auto_response_suppress);
    assert_eq!(reason(&m), None);
}

#[test]
fn own_alert_first() {
    let mut m = fixture!("auto_replied.eml");
    m.signals.slawatch_alert = true;
    assert_eq!(reason(&m), Some(ExclusionReason::OwnAlert));
}

#[test]
fn no_sender() {
    let mut m = customer();
    m.from = None;
    assert_eq!(reason(&m), Some(ExclusionReason::NoSender));
}

#[test]
fn bounces() {
    let e = classify_inbound(&fixture!("dsn.eml"), &desk()).unwrap();
    assert_eq!(e.reason, ExclusionReason::Bounce);
    assert_eq!(e.detail, "sender mailer-daemon@mx.example.com");
    assert_eq!(
        reason(&fixture!("mailer_daemon.eml")),
        Some(ExclusionReason::Bounce)
    );

    let mut m = customer();
    m.signals.return_path = Some(String::new());
    assert_eq!(reason(&m), Some(ExclusionReason::Bounce));

    let mut m = customer();
    m.signals.delivery_status_report = true;
    assert_eq!(reason(&m), Some(ExclusionReason::Bounce));

    let mut m = customer();
    m.signals.failed_recipients = true;
    assert_eq!(reason(&m), Some(ExclusionReason::Bounce));

    let mut m = customer();
    m.from = Some(Address {
        name: None,
        email: "postmaster@customer.example".into(),
    });
    assert_eq!(reason(&m), Some(ExclusionReason::Bounce));

    // A bounce subject with an automatic marker is a bounce.
    let mut m = customer();
    m.subject = "Undeliverable: Your invoice".into();
    m.signals.auto_submitted = Some("auto-generated".into());
    assert_eq!(reason(&m), Some(ExclusionReason::Bounce));
}

#[test]
fn bounce_subject_alone_is_a_customer() {
    let mut m = customer();
    m.subject = "Undeliverable: my mail to you bounced, why?".into();
    assert_eq!(reason(&m), None);
    m.subject = "Mail delivery failed: returning message to sender".into();
    assert_eq!(reason(&m), None);
}

#[test]
fn auto_submitted() {
    let e = classify_inbound(&fixture!("auto_replied.eml"), &desk()).unwrap();
    assert_eq!(e.reason, ExclusionReason::AutoSubmitted);
    assert_eq!(e.detail, "Auto-Submitted: auto-replied");
    assert_eq!(
        reason(&fixture!("vacation.eml")),
        Some(ExclusionReason::AutoSubmitted)
    );
    let mut m = customer();
    m.signals.auto_submitted = Some("no".into());
    assert_eq!(reason(&m), None);
    m.signals.auto_submitted = Some("auto-replied; owner-email=\"x@y\"".into());
    assert_eq!(reason(&m), Some(ExclusionReason::AutoSubmitted));
}

#[test]
fn vendor_auto_reply() {
    let mut m = customer();
    m.signals.vendor_autoreply = Some("X-Autorespond".into());
    let e = classify_inbound(&m, &desk()).unwrap();
    assert_eq!(e.reason, ExclusionReason::AutoReply);
    assert_eq!(e.detail, "X-Autorespond present");
}

#[test]
fn precedence() {
    assert_eq!(
        reason(&fixture!("precedence_bulk.eml")),
        Some(ExclusionReason::Precedence)
    );
    let mut m = customer();
    for (p, expected) in [
        ("list", Some(ExclusionReason::Precedence)),
        ("junk", Some(ExclusionReason::Precedence)),
        ("first-class", None),
        ("urgent", None),
    ] {
        m.signals.precedence = Some(p.into());
        assert_eq!(reason(&m), expected, "{p}");
    }
}

#[test]
fn list_loop_spam() {
    assert_eq!(
        reason(&fixture!("mailing_list.eml")),
        Some(ExclusionReason::MailingList)
    );
    assert_eq!(
        reason(&fixture!("x_loop.eml")),
        Some(ExclusionReason::MailLoop)
    );
    assert_eq!(reason(&fixture!("spam.eml")), Some(ExclusionReason::Spam));
    // ezmlm names its lists in `Mailing-List`, without List-Id.
    assert_eq!(
        reason(&fixture!("ezmlm_list.eml")),
        Some(ExclusionReason::MailingList)
    );
}

#[test]
fn internal_senders() {
    let mut m = customer();
    m.from = Some(Address {
        name: None,
        email: "colleague@example.com".into(),
    });
    assert_eq!(reason(&m), Some(ExclusionReason::InternalSender));
    m.from = Some(Address {
        name: None,
        email: "support@example.com".into(),
    });
    assert_eq!(reason(&m), Some(ExclusionReason::InternalSender));
    // A lookalike domain is a customer.
    m.from = Some(Address {
        name: None,
        email: "someone@notexample.com".into(),
    });
    assert_eq!(reason(&m), None);
    assert!(is_internal(&desk(), "A@EXAMPLE.COM"));
    assert!(!is_internal(&desk(), "a@mail.example.com"));
}

#[test]
fn ignore_lists() {
    let mut m = customer();
    m.from = Some(Address {
        name: None,
        email: "robot@ignored.example".into(),
    });
    assert_eq!(reason(&m), Some(ExclusionReason::Ignored));
    m.from = Some(Address {
        name: None,
        email: "anyone@noise.example".into(),
    });
    assert_eq!(reason(&m), Some(ExclusionReason::Ignored));
    m.from = Some(Address {
        name: None,
        email: "other@ignored.example".into(),
    });
    assert_eq!(reason(&m), None);
    m.subject = "[TEST TICKET] please ignore".into();
    let e = classify_inbound(&m, &desk()).unwrap();
    assert_eq!(e.reason, ExclusionReason::Ignored);
}

fn outbound(from: &str, to: &[&str]) -> Mail {
    Mail {
        from: Some(Address {
            name: None,
            email: from.into(),
        }),
        to: to
            .iter()
            .map(|e| Address {
                name: None,
                email: (*e).into(),
            })
            .collect(),
        subject: "Re: Cannot log in".into(),
        ..Mail::default()
    }
}

#[test]
fn outbound_reply() {
    let m = outbound("support@example.com", &["jane.doe@customer.example"]);
    assert_eq!(classify_outbound(&m, &desk()), OutboundKind::Reply);
    // A customer in Cc is enough.
    let mut m = outbound("soporte@example.com", &["colleague@example.com"]);
    m.cc.push(Address {
        name: None,
        email: "maria@correo.example".into(),
    });
    assert_eq!(classify_outbound(&m, &desk()), OutboundKind::Reply);
}

#[test]
fn outbound_not_from_support() {
    let m = outbound("agent.personal@example.com", &["jane@customer.example"]);
    assert_eq!(classify_outbound(&m, &desk()), OutboundKind::NotFromSupport);
    // Sent on behalf of the desk: Sender counts.
    let mut m = m;
    m.sender = Some(Address {
        name: None,
        email: "support@example.com".into(),
    });
    assert_eq!(classify_outbound(&m, &desk()), OutboundKind::Reply);
}

#[test]
fn outbound_auto_acknowledgement() {
    let mut m = outbound("support@example.com", &["jane@customer.example"]);
    m.signals.auto_submitted = Some("auto-replied".into());
    assert_eq!(
        classify_outbound(&m, &desk()),
        OutboundKind::AutoAcknowledgement
    );
    let mut m = outbound("support@example.com", &["jane@customer.example"]);
    m.subject = "auto: we received your message".into();
    assert_eq!(
        classify_outbound(&m, &desk()),
        OutboundKind::AutoAcknowledgement
    );
    let mut m = outbound("support@example.com", &["jane@customer.example"]);
    m.signals.precedence = Some("auto_reply".into());
    assert_eq!(
        classify_outbound(&m, &desk()),
        OutboundKind::AutoAcknowledgement
    );
    let mut m = outbound("support@example.com", &["jane@customer.example"]);
    m.signals.vendor_autoreply = Some("X-Autoreply".into());
    assert_eq!(
        classify_outbound(&m, &desk()),
        OutboundKind::AutoAcknowledgement
    );
    let mut m = outbound("support@example.com", &["jane@customer.example"]);
    m.signals.auto_submitted = Some("no".into());
    assert_eq!(classify_outbound(&m, &desk()), OutboundKind::Reply);
}

#[test]
fn outbound_internal_forward() {
    let m = outbound(
        "support@example.com",
        &["colleague@example.com", "daam@example.com"],
    );
    assert_eq!(
        classify_outbound(&m, &desk()),
        OutboundKind::InternalForward
    );
    let m = outbound("support@example.com", &[]);
    assert_eq!(
        classify_outbound(&m, &desk()),
        OutboundKind::InternalForward
    );
}

#[test]
fn a_domain_entry_makes_every_address_of_exactly_that_domain_a_support_address() {
    let mut d = desk();
    d.support_addresses = vec!["@example.com".into()];
    // An agent answering from a personal address into the shared Sent folder.
    let m = outbound("Ana.Ruiz@Example.COM", &["jane.doe@customer.example"]);
    assert_eq!(classify_outbound(&m, &d), OutboundKind::Reply);
    assert!(is_support_address(&d, "support@example.com"));
    // Not a subdomain, not a look-alike, not a bare domain.
    for other in [
        "ana@eu.example.com",
        "ana@example.com.evil",
        "ana@notexample.com",
        "@example.com",
        "example.com",
        "",
    ] {
        assert!(!is_support_address(&d, other), "{other}");
    }
    let m = outbound("ana@eu.example.com", &["jane.doe@customer.example"]);
    assert_eq!(classify_outbound(&m, &d), OutboundKind::NotFromSupport);
}

#[test]
fn entries_that_can_never_match_are_named() {
    use crate::desk::{address_entry_problem, domain_entry_problem};
    for ok in ["support@example.com", "@example.com", " @Example.com "] {
        assert_eq!(address_entry_problem(ok), None, "{ok}");
    }
    for bad in [
        "support",
        "example.com",
        "support@",
        "@",
        "a@b@example.com",
        "@exa mple.com",
        "@.example.com",
        "a@example..com",
    ] {
        assert!(address_entry_problem(bad).is_some(), "{bad}");
    }
    for ok in ["example.com", "@example.com"] {
        assert_eq!(domain_entry_problem(ok), None, "{ok}");
    }
    for bad in ["ana@example.com", "@", "example.com.", "exa mple.com"] {
        assert!(domain_entry_problem(bad).is_some(), "{bad}");
    }
}

#[test]
fn helpdesk_signatures_each_with_their_own_reason() {
    for (m, expect) in [
        (
            fixture!("exchange_oof_legacy.eml"),
            ExclusionReason::OutOfOffice,
        ),
        (
            fixture!("firstclass_machine.eml"),
            ExclusionReason::MachineGenerated,
        ),
        (
            fixture!("otrs_autoreply.eml"),
            ExclusionReason::HelpdeskLoop,
        ),
        (fixture!("rt_autoreply.eml"), ExclusionReason::HelpdeskLoop),
        // Znuny's own automatic mail (its `Loop` headers): RFC 3834 says it first.
        (
            fixture!("znuny_auto_response.eml"),
            ExclusionReason::AutoSubmitted,
        ),
    ] {
        assert_eq!(reason(&m), Some(expect), "{}", m.subject);
    }
}

#[test]
fn customers_that_look_like_helpdesk_signatures_are_inquiries() {
    for m in [
        // Outlook mail with every Exchange header, about automatic replies.
        fixture!("exchange_customer_automatic_subject.eml"),
        fixture!("outlook_suppress.eml"),
        // The prefix without Exchange.
        fixture!("plain_customer_out_of_office_subject.eml"),
        fixture!("firstclass_customer.eml"),
        fixture!("otrs_agent_reply.eml"),
        fixture!("rt_correspondence.eml"),
    ] {
        assert_eq!(classify_inbound(&m, &desk()), None, "{}", m.subject);
    }
}
