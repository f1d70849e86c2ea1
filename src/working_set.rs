//! The working set's I/O: what the tracker lets go is filed in the store, and what new
//! evidence refers to comes back from it; start-up resumes from the latest snapshot.
//!
//! The rules live in the core (`slawatch_core::tracker::working_set`): the tracker evicts
//! threads with nothing open and no evidence inside `store.working_window`, says which keys an
//! observation or a replayed event needs that it no longer holds, and rebuilds a thread from
//! its events. This module is the shell around it:
//!
//! - [`start`]: the state at start-up. The latest snapshot that matches the chain (its row's
//!   hash) gives the threads to read back; only the rows after it are replayed and checked.
//!   Without a usable snapshot (none yet, damaged, another ledger, keys of another build), the
//!   whole ledger is replayed: slower, never wrong. Either way threads leave memory as the
//!   replay goes, so a year of history is never in memory at once.
//! - [`bring_back`]: before the engine decides, the threads an observation refers to that
//!   were evicted.
//! - [`Archiving`]: threads evicted and not yet in the store are kept here and looked at
//!   first, so an archive write that fails or is slow loses nothing.

use std::sync::{Arc, RwLock};

use chrono::Utc;
use slawatch_core::tracker::Tracker;
use slawatch_core::tracker::state::TrackerRules;
use slawatch_core::tracker::working_set::{EvictedThread, Snapshot, key_check};

use crate::scheduler::Deadlines;
use crate::store::{PublicKey, Seals, Store, StoreError, Verification};

/// Rows read back at a time when a snapshot is loaded.
const RESTORE_CHUNK: usize = 4096;

/// Replayed events between two evictions at start-up. Each eviction's archive write touches
/// index pages all over the archive's keys (they are hashes), so a replay evicts rarely, in
/// large batches, and empties the write-ahead log after each: at 20,000 events a 5,000,000-
/// inquiry replay wrote tens of gigabytes of log. Memory then holds up to this many events'
/// inquiries beyond the working set while it replays.
const REPLAY_EVICT_EVERY: usize = 500_000;

/// The state at start-up.
pub struct Started {
    pub tracker: Tracker,
    pub deadlines: Deadlines,
    /// The chain's verdict over the rows read (all of them, or those after the snapshot).
    pub verification: Verification,
    pub seals: Seals,
    /// The seq of the snapshot resumed from, if one was.
    pub snapshot_seq: Option<i64>,
    /// Rows replayed after the snapshot (or all of them).
    pub replayed: u64,
    /// Whether the store holds archived threads.
    pub archived: bool,
}

impl Started {
    /// The ledger row the restored state stands at (ledger seqs have no gaps, so it is the
    /// snapshot's plus the rows replayed after it), if every row read was intact.
    pub fn position(&self) -> Option<crate::replica::Position> {
        match &self.verification {
            Verification::Intact { head_hash, .. } => Some(crate::replica::Position {
                seq: self.snapshot_seq.unwrap_or(0) + self.replayed as i64,
                hash: head_hash.clone(),
            }),
            Verification::Broken { .. } => None,
        }
    }
}

/// Restores the state: the latest usable snapshot and the rows after it, or every row. Threads
/// leave memory as the replay goes and are filed in the store's archive.
pub async fn start(
    store: &Store,
    rules: Arc<TrackerRules>,
    key: Option<PublicKey>,
    window: chrono::Duration,
) -> Result<Started, StoreError> {
    restore(store, rules, key, Some(window)).await
}

/// [`start`] for a standby replica, which never writes: nothing is evicted (the active files
/// threads in the archive; the standby reads them back, and loads a newer snapshot now and
/// then to let go of what the active evicted).
pub async fn start_following(
    store: &Store,
    rules: Arc<TrackerRules>,
    key: Option<PublicKey>,
) -> Result<Started, StoreError> {
    restore(store, rules, key, None).await
}

async fn restore(
    store: &Store,
    rules: Arc<TrackerRules>,
    key: Option<PublicKey>,
    evict: Option<chrono::Duration>,
) -> Result<Started, StoreError> {
    let mut archived = store.has_archive().await?;
    let mut tracker = Tracker::new(rules.clone());
    let mut resumed: Option<(i64, String)> = None;
    for stored in store.snapshots().await? {
        let usable = match serde_json::from_str::<Snapshot>(&stored.body) {
            Err(e) => Err(format!("it does not read: {e}")),
            Ok(s) if s.key_check != key_check() => {
                Err("it was written with other keys".to_string())
            }
            Ok(s) => match store.hash_at(stored.seq).await? {
                Some(hash) if hash == stored.head_hash => Ok(s),
                Some(_) => Err(format!(
                    "ledger row {} is not the row it was taken at",
                    stored.seq
                )),
                None => Err(format!("the ledger has no row {}", stored.seq)),
            },
        };
        let snapshot = match usable {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(seq = stored.seq, "Snapshot not used: {why}.");
                continue;
            }
        };
        let mut seqs: Vec<i64> = snapshot.threads.iter().flatten().copied().collect();
        seqs.sort_unstable();
        seqs.dedup();
        tracker.load_snapshot(&snapshot);
        drop(snapshot);
        // A chunk of rows at a time: the working set's events are never all decoded at once.
        let mut read = Ok(());
        for chunk in seqs.chunks(RESTORE_CHUNK) {
            match store.events_at(chunk).await {
                Ok(events) => tracker.restore(events.iter().map(|(seq, e)| (*seq, e))),
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        match read {
            Ok(()) => {
                resumed = Some((stored.seq, stored.head_hash));
                break;
            }
            Err(e) => {
                tracing::warn!(seq = stored.seq, "Snapshot not used: {e}.");
                tracker = Tracker::new(rules.clone());
            }
        }
    }
    let snapshot_seq = resumed.as_ref().map(|(seq, _)| *seq);
    let mut pages = store.checked_pages(key, resumed);
    let mut replayed: u64 = 0;
    let mut since_eviction = 0usize;
    while let Some(page) = pages.next().await? {
        let events = page.events().collect::<Result<Vec<_>, _>>()?;
        let back = if archived {
            let keys = events
                .iter()
                .flat_map(|(_, e)| tracker.wanted_for_event(e))
                .collect();
            BroughtBack::fetch(store, keys).await?
        } else {
            BroughtBack::default()
        };
        replay(&mut tracker, &events, &back);
        replayed += events.len() as u64;
        since_eviction += events.len();
        if let Some(window) = evict
            && since_eviction >= REPLAY_EVICT_EVERY
        {
            since_eviction = 0;
            let evicted = tracker.evict(tracker.working_cutoff(Utc::now(), window));
            if !evicted.is_empty() {
                store.archive_threads(&evicted).await?;
                store.truncate_wal().await;
                archived = true;
            }
        }
    }
    if let Some(window) = evict {
        let evicted = tracker.evict(tracker.working_cutoff(Utc::now(), window));
        if !evicted.is_empty() {
            store.archive_threads(&evicted).await?;
            archived = true;
        }
        if replayed > REPLAY_EVICT_EVERY as u64 {
            store.truncate_wal().await;
        }
    }
    tracker.shrink_to_fit();
    // The snapshot's and the pages' temporaries are freed by now; what would stay resident
    // in threads that go idle goes back to the system.
    crate::memory::release_freed();
    let (verification, seals) = pages.finish();
    Ok(Started {
        deadlines: Deadlines::of_open(&tracker),
        tracker,
        verification,
        seals,
        snapshot_seq,
        replayed,
        archived,
    })
}

/// The archived threads a page of ledger rows refers to, with their events: read before the
/// page is applied, so applying it needs no I/O (a standby applies under its state's lock).
#[derive(Debug, Default)]
pub struct BroughtBack {
    threads: Vec<crate::store::archive::ArchivedThread>,
    events: std::collections::HashMap<i64, slawatch_core::tracker::event::Event>,
}

impl BroughtBack {
    /// Looks up `keys` (those a page's rows want and the tracker lacks:
    /// `Tracker::wanted_for_event`) and reads the threads they lead to.
    pub async fn fetch(store: &Store, mut keys: Vec<u64>) -> Result<BroughtBack, StoreError> {
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(BroughtBack::default());
        }
        let threads = store.archived_threads(&keys).await?;
        let mut seqs: Vec<i64> = threads
            .iter()
            .flat_map(|t| t.seqs.iter().copied())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut events = std::collections::HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(RESTORE_CHUNK) {
            events.extend(store.events_at(chunk).await?);
        }
        Ok(BroughtBack { threads, events })
    }
}

/// Applies a page of ledger rows in order, first bringing back each archived thread a row
/// refers to, as it stood before that row (later rows of it come in the page).
pub fn replay(
    tracker: &mut Tracker,
    events: &[(i64, slawatch_core::tracker::event::Event)],
    back: &BroughtBack,
) {
    for (seq, event) in events {
        if !back.threads.is_empty() {
            // Asked again per event: a thread an earlier row of the page opened is held now.
            let wanted = tracker.wanted_for_event(event);
            for archived in back
                .threads
                .iter()
                .filter(|t| t.keys.iter().any(|k| wanted.contains(k)))
            {
                if tracker.holds_thread(&archived.thread) {
                    continue;
                }
                let before: Vec<(i64, &slawatch_core::tracker::event::Event)> = archived
                    .seqs
                    .iter()
                    .filter(|s| *s < seq)
                    .filter_map(|s| back.events.get(s).map(|e| (*s, e)))
                    .collect();
                if !before.is_empty() {
                    tracker.restore(before);
                }
            }
        }
        tracker.apply(event);
        tracker.note_ledger_seq(event, *seq);
    }
}

/// Threads evicted and not yet (known to be) in the store's archive.
#[derive(Debug, Default)]
pub struct Archiving {
    pending: Vec<EvictedThread>,
}

impl Archiving {
    pub fn add(&mut self, threads: Vec<EvictedThread>) {
        self.pending.extend(threads);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// What to write (a copy: they stay here until written).
    pub fn to_write(&self) -> Vec<EvictedThread> {
        self.pending.clone()
    }

    /// `written` are in the store now.
    pub fn written(&mut self, written: &[EvictedThread]) {
        self.pending.retain(|t| !written.contains(t));
    }

    /// The pending threads `keys` lead to.
    fn hits(&self, keys: &[u64]) -> Vec<(String, Vec<i64>)> {
        self.pending
            .iter()
            .filter(|t| keys.iter().any(|k| t.keys.binary_search(k).is_ok()))
            .map(|t| (t.thread.clone(), t.seqs.clone()))
            .collect()
    }
}

/// Brings back the evicted threads `keys` lead to, from `archiving` first, then the store.
/// Returns how many threads came back.
pub async fn bring_back(
    store: &Store,
    tracker: &RwLock<Tracker>,
    archiving: &Archiving,
    keys: &[u64],
) -> Result<usize, StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let mut threads = archiving.hits(keys);
    for found in store.archived_threads(keys).await? {
        if !threads.iter().any(|(t, _)| *t == found.thread) {
            threads.push((found.thread, found.seqs));
        }
    }
    let held = |thread: &str| {
        tracker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .holds_thread(thread)
    };
    let mut seqs: Vec<i64> = threads
        .iter()
        .filter(|(thread, _)| !held(thread))
        .flat_map(|(_, seqs)| seqs.iter().copied())
        .collect();
    if seqs.is_empty() {
        return Ok(0);
    }
    seqs.sort_unstable();
    seqs.dedup();
    let events = store.events_at(&seqs).await?;
    let mut tracker = tracker.write().unwrap_or_else(|e| e.into_inner());
    let before = tracker.threads_held();
    tracker.restore(events.iter().map(|(s, e)| (*s, e)));
    Ok(tracker.threads_held().saturating_sub(before))
}

/// The working set as JSON, with the ledger seq it stands at; `None` while events applied are
/// not all in the ledger yet.
pub fn snapshot_of(tracker: &Tracker) -> Option<(i64, String)> {
    if !tracker.all_noted() || tracker.last_seq() == 0 {
        return None;
    }
    let body = serde_json::to_string(&tracker.snapshot()).ok()?;
    Some((tracker.last_seq(), body))
}

/// How the engine keeps its working set (`store.working_window`, `store.snapshot_every`).
#[derive(Debug, Clone, Copy)]
pub struct WorkingSetOptions {
    pub window: chrono::Duration,
    pub snapshot_every: chrono::Duration,
    /// Whether the store held archived threads at start-up.
    pub archived: bool,
    /// How often threads are looked at for eviction besides when many came in ([`EVICT_EVERY`]).
    pub evict_every: chrono::Duration,
}

/// [`WorkingSetOptions::evict_every`] in the daemon.
pub const EVICT_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Threads seen since the last eviction that bring the next one forward (a backfill).
const EVICT_AFTER_GROWTH: usize = 20_000;

/// A finished archive write: the threads it wrote, and how it went.
type ArchiveWrite = (Vec<EvictedThread>, Result<(), StoreError>);

/// The engine's side of the working set between turns: evictions and their archive writes,
/// and snapshots, each written by a task of its own so the engine never waits for them.
pub struct Keeper {
    options: WorkingSetOptions,
    archiving: Archiving,
    archive_write: Option<tokio::sync::oneshot::Receiver<ArchiveWrite>>,
    snapshot_write: Option<tokio::sync::oneshot::Receiver<Result<i64, StoreError>>>,
    next_eviction: chrono::DateTime<Utc>,
    next_snapshot: chrono::DateTime<Utc>,
    threads_at_eviction: usize,
    archived: bool,
}

impl Keeper {
    pub fn new(options: WorkingSetOptions, now: chrono::DateTime<Utc>) -> Keeper {
        Keeper {
            options,
            archiving: Archiving::default(),
            archive_write: None,
            snapshot_write: None,
            next_eviction: now,
            next_snapshot: now + options.snapshot_every,
            threads_at_eviction: 0,
            archived: options.archived,
        }
    }

    /// Whether observations must be looked up in the archive before they are decided.
    pub fn has_archive(&self) -> bool {
        self.archived || !self.archiving.is_empty()
    }

    /// When the engine should next take a turn for it.
    pub fn next_instant(&self) -> chrono::DateTime<Utc> {
        self.next_eviction.min(self.next_snapshot)
    }

    /// Brings back the threads `keys` lead to (see [`bring_back`]), within `timeout`.
    pub async fn bring_back(
        &self,
        store: &Store,
        tracker: &RwLock<Tracker>,
        keys: &[u64],
        timeout: std::time::Duration,
    ) -> Result<usize, StoreError> {
        if keys.is_empty() || !self.has_archive() {
            return Ok(0);
        }
        match tokio::time::timeout(timeout, bring_back(store, tracker, &self.archiving, keys)).await
        {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                op: "look up archived threads",
                after: timeout,
            }),
        }
    }

    /// One turn: collects finished writes, evicts when due, starts the archive write and, with
    /// the ledger idle and every evicted thread archived, a snapshot.
    pub fn turn(
        &mut self,
        now: chrono::DateTime<Utc>,
        store: &Store,
        tracker: &RwLock<Tracker>,
        ledger_idle: bool,
    ) {
        if let Some(rx) = &mut self.archive_write
            && let Ok((written, result)) = rx.try_recv()
        {
            self.archive_write = None;
            match result {
                Ok(()) => {
                    self.archiving.written(&written);
                    self.archived = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, threads = written.len(), "Archiving threads that left memory failed; retried.")
                }
            }
        }
        if let Some(rx) = &mut self.snapshot_write
            && let Ok(result) = rx.try_recv()
        {
            self.snapshot_write = None;
            match result {
                Ok(seq) => tracing::debug!(seq, "Working set snapshot written."),
                Err(e) => {
                    tracing::warn!(error = %e, "Writing the working set snapshot failed; the next one is tried later.")
                }
            }
        }
        let held = tracker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .threads_held();
        if now >= self.next_eviction || held > self.threads_at_eviction + EVICT_AFTER_GROWTH {
            let mut tracker = tracker.write().unwrap_or_else(|e| e.into_inner());
            let cutoff = tracker.working_cutoff(now, self.options.window);
            let evicted = tracker.evict(cutoff);
            if !evicted.is_empty() {
                tracker.shrink_to_fit();
            }
            self.threads_at_eviction = tracker.threads_held();
            drop(tracker);
            self.next_eviction = now + self.options.evict_every;
            if !evicted.is_empty() {
                // The indexes `shrink_to_fit` rebuilt, and the threads the last archive write
                // let go, go back to the system (outside the lock).
                crate::memory::release_freed();
                tracing::debug!(
                    threads = evicted.len(),
                    held = self.threads_at_eviction,
                    "Threads left the working set."
                );
                self.archiving.add(evicted);
            }
        }
        if self.archive_write.is_none() && !self.archiving.is_empty() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let threads = self.archiving.to_write();
            let store = store.clone();
            tokio::spawn(async move {
                let result = store.archive_threads(&threads).await;
                let _ = tx.send((threads, result));
            });
            self.archive_write = Some(rx);
        }
        if now >= self.next_snapshot
            && ledger_idle
            && self.archiving.is_empty()
            && self.snapshot_write.is_none()
        {
            let taken = snapshot_of(&tracker.read().unwrap_or_else(|e| e.into_inner()));
            if let Some((seq, body)) = taken {
                self.next_snapshot = now + self.options.snapshot_every;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let store = store.clone();
                tokio::spawn(async move {
                    let result = store.save_snapshot(seq, now, &body).await.map(|()| seq);
                    let _ = tx.send(result);
                });
                self.snapshot_write = Some(rx);
            }
        }
    }

    /// At shutdown, after the last ledger write: every evicted thread archived, then a snapshot.
    pub async fn finish(
        &mut self,
        store: &Store,
        tracker: &RwLock<Tracker>,
        now: chrono::DateTime<Utc>,
    ) {
        if let Some(rx) = self.archive_write.take()
            && let Ok((written, Ok(()))) = rx.await
        {
            self.archiving.written(&written);
        }
        if !self.archiving.is_empty() {
            let threads = self.archiving.to_write();
            match store.archive_threads(&threads).await {
                Ok(()) => self.archiving.written(&threads),
                Err(e) => {
                    tracing::warn!(error = %e, "Archiving threads at shutdown failed; the next start replays the ledger instead of a snapshot.");
                    return;
                }
            }
        }
        if let Some(rx) = self.snapshot_write.take() {
            let _ = rx.await;
        }
        let taken = snapshot_of(&tracker.read().unwrap_or_else(|e| e.into_inner()));
        match taken {
            Some((seq, body)) => match store.save_snapshot(seq, now, &body).await {
                Ok(()) => tracing::info!(seq, "Working set snapshot written at shutdown."),
                Err(e) => {
                    tracing::warn!(error = %e, "Writing the working set snapshot at shutdown failed.")
                }
            },
            None => {
                tracing::warn!("No snapshot at shutdown: events applied are not all in the ledger.")
            }
        }
    }
}
