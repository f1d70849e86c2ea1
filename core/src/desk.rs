//! Who the desk is: the settings the SLA rules read (its addresses and domains, what to ignore,
//! its default language and time zone). A plain value: the daemon's configuration layer builds it
//! from `[desk]`, the rules only read it.

use chrono_tz::Tz;

use crate::domain::Language;

/// Who the desk is: its addresses, its domains, what to ignore.
#[derive(Debug, Clone)]
pub struct DeskSettings {
    /// Lower-cased addresses the desk answers from (and receives at).
    pub support_addresses: Vec<String>,
    /// The desk's own domains: senders there are colleagues, not customers.
    pub internal_domains: Vec<String>,
    /// Lower-cased sender addresses or `@domain` entries whose mail is never an inquiry.
    pub ignore_senders: Vec<String>,
    /// Subjects (case-insensitive substrings) whose mail is never an inquiry.
    pub ignore_subjects: Vec<String>,
    /// Subject prefixes that mark the desk's own automatic acknowledgement, in addition to
    /// `Auto-Submitted` and vendor auto-reply headers.
    pub auto_ack_subjects: Vec<String>,
    pub default_language: Language,
    /// Time zone for display (alerts, reports); instants stay UTC.
    pub time_zone: Tz,
}

impl DeskSettings {
    /// The smallest desk: answers from `address`, whose domain is internal; English, UTC,
    /// nothing ignored.
    pub fn with_address(address: &str) -> DeskSettings {
        let address = address.to_lowercase();
        let domain = address.rsplit_once('@').map(|(_, d)| d.to_string());
        DeskSettings {
            support_addresses: vec![address],
            internal_domains: domain.into_iter().collect(),
            ignore_senders: Vec::new(),
            ignore_subjects: Vec::new(),
            auto_ack_subjects: Vec::new(),
            default_language: Language::En,
            time_zone: chrono_tz::UTC,
        }
    }
}

/// Why a `support_addresses` or `ignore_senders` entry (`user@domain` or `@domain`) could never
/// match a sender, if it could not.
pub fn address_entry_problem(entry: &str) -> Option<String> {
    let e = entry.trim();
    let Some((local, domain)) = e.rsplit_once('@') else {
        return Some(format!(
            "`{e}` is neither an address (user@domain) nor a domain (@domain)"
        ));
    };
    if local.contains('@') {
        return Some(format!("`{e}` has more than one @"));
    }
    domain_problem(domain).map(|why| format!("`{e}`: {why}"))
}

/// Why an `internal_domains` entry (`domain` or `@domain`) could never match, if it could not.
pub fn domain_entry_problem(entry: &str) -> Option<String> {
    let e = entry.trim();
    let domain = e.strip_prefix('@').unwrap_or(e);
    if domain.contains('@') {
        return Some(format!(
            "`{e}` is an address, not a domain (write its domain, e.g. `{}`)",
            domain.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
        ));
    }
    domain_problem(domain).map(|why| format!("`{e}`: {why}"))
}

fn domain_problem(domain: &str) -> Option<&'static str> {
    if domain.is_empty() {
        Some("the domain is missing")
    } else if domain
        .chars()
        .any(|c| c.is_whitespace() || "<>,;\"()[]".contains(c))
    {
        Some("a domain cannot contain spaces or <>,;\"()[]")
    } else if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        Some("the domain has an empty label")
    } else {
        None
    }
}
