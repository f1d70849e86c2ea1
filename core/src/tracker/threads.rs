//! The thread index: which conversation a message belongs to (by `In-Reply-To`, then
//! `References`), the shared copies of thread ids, and the ids of messages already seen.

use std::sync::Arc;

use crate::tracker::observation::Mail;
use crate::tracker::state::{Tracker, key64};

impl Tracker {
    /// The Message-ID, made unique when another message already used it.
    pub(super) fn external_id(&self, mail: &Mail) -> String {
        if self.thread_of.contains_key(mail.message_id.as_str()) {
            format!(
                "{}#{}",
                mail.message_id,
                &mail.digest[..mail.digest.len().min(12)]
            )
        } else {
            mail.message_id.clone()
        }
    }

    /// The thread of the nearest known message this one refers to: `In-Reply-To` first, then
    /// `References` from the most recent.
    /// A referenced id that is itself a thread (a message not read yet that others already
    /// refer to) counts as known.
    pub(super) fn thread_for(&self, mail: &Mail) -> Option<String> {
        referenced_ids(mail).iter().find_map(|id| {
            self.thread_of
                .get(id.as_str())
                .or_else(|| self.threads.get_key_value(id.as_str()).map(|(k, _)| k))
                .map(|t| t.to_string())
        })
    }

    /// The thread of a customer message: that of the nearest known message it refers to; when
    /// it refers only to messages not read yet, the conversation's root (the first `References`
    /// entry, else `In-Reply-To`), so the root, read later, finds its conversation; else its own.
    pub(super) fn customer_thread(&self, mail: &Mail, external_id: &str) -> String {
        self.thread_for(mail)
            .or_else(|| {
                mail.references
                    .first()
                    .or(mail.in_reply_to.first())
                    .cloned()
            })
            .unwrap_or_else(|| external_id.to_string())
    }

    /// The shared copy of a thread id; a new thread gets an empty record.
    pub(super) fn share_thread(&mut self, thread_id: &str) -> Arc<str> {
        if let Some((shared, _)) = self.threads.get_key_value(thread_id) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(thread_id);
        self.threads.insert(shared.clone(), Box::default());
        shared
    }

    /// Records a message in its thread; returns the shared copies of its id and thread id.
    pub(super) fn index_message(
        &mut self,
        external_id: &str,
        thread_id: &str,
        digest: Option<&str>,
    ) -> (Arc<str>, Arc<str>) {
        let thread = self.share_thread(thread_id);
        let id: Arc<str> = if external_id == thread_id {
            thread.clone()
        } else {
            self.response_id_in(&thread, external_id)
                .unwrap_or_else(|| Arc::from(external_id))
        };
        // A disambiguated id (`<id>#digest`) is still reachable by the id replies quote.
        if let Some((plain, _)) = external_id.split_once('#') {
            let plain: Arc<str> = Arc::from(plain);
            if !self.thread_of.contains_key(&plain) {
                self.thread_of.insert(plain.clone(), thread.clone());
                self.note_message(&thread, &plain, None);
            }
        }
        self.thread_of.insert(id.clone(), thread.clone());
        let digest = digest.filter(|d| !d.is_empty()).map(key64);
        if let Some(d) = digest {
            self.seen_digests.insert(d);
        }
        self.note_message(&thread, &id, digest);
        (id, thread)
    }
}

impl Tracker {
    /// The copy of `id` an answered inquiry of `thread` holds as its response (a reply linked
    /// after the response it gives): shared rather than held twice.
    fn response_id_in(&self, thread: &str, id: &str) -> Option<Arc<str>> {
        self.threads
            .get(thread)?
            .answered
            .iter()
            .filter_map(|i| self.inquiries.get(i)?.response_id.as_ref())
            .find(|r| ***r == *id)
            .cloned()
    }
}

/// `In-Reply-To` first, then `References` from the most recent, without duplicates.
pub(super) fn referenced_ids(mail: &Mail) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in mail.in_reply_to.iter().chain(mail.references.iter().rev()) {
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}
