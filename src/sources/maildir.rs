//! Maildir source: for desks running slawatch on the mail host, and the bundled sample mailbox.
//!
//! A thin I/O shell: every `scan_interval` it lists the `new` and `cur` directories of the
//! configured folders (`INBOX` = the root, `X` = `<root>/.X`, Maildir++), reads the messages it
//! has not handled yet (headers plus a bounded body prefix), parses them with the pure
//! [`slawatch_core::mail`] parser and hands them to the engine in delivery-time order, inbox
//! messages as `MessageReceived`, sent ones as `MessageSent`.
//!
//! **Which messages were handled is tracked by their unique names**, never by a time window: a
//! file's identity is its unique name (before `:`), so a flag change or the move from `new` to
//! `cur` is not a new message, while a file named with an old instant (a slow delivery, a
//! restore) or moved in from another folder under its old name is read like any other. The
//! durable cursor is one row per handled message (key `{folder}\t{unique}`, value its delivery
//! second), committed with the batch that read it; a row whose file has left the folder is
//! deleted after a complete scan, so the cursor is as large as the folders, never larger.
//! Re-reads are harmless anyway: the tracker drops a message whose Message-ID and digest it has
//! seen. (A folder cursor `{high, recent}` of an older version is honoured once: what it covered
//! is adopted as handled without being read again.)
//!
//! **The delivery time cannot be set in the future.** It is the epoch in the file name
//! (`1732456789.M1P2.host:2,S`), else the file's mtime, but never later than the moment this
//! source first saw the file: a mail host with a wrong clock, or a restore, would otherwise
//! clock an inquiry a year ahead. A clamped time is logged with its skew and counted
//! (`slawatch_source_errors_total{kind="delivery_time_clamped"}`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use slawatch_core::mail::{self, Envelope};
use slawatch_core::tracker::Observation;
use tokio_util::sync::CancellationToken;

use crate::config::MaildirSettings;
use crate::sources::{CursorUpdate, EngineSink, SinkError, SourceBatch};
use crate::telemetry::SourceHealth;

/// Body bytes read after the header block: enough for the text sample, never an attachment.
pub const BODY_PREFIX_BYTES: u64 = 64 * 1024;

/// Header bytes read at most (a header block larger than this is abuse, not mail).
const HEADER_MAX_BYTES: u64 = 256 * 1024;

/// How far behind its newest delivery an older version's folder cursor still looked for late
/// files (only to read such a cursor).
pub const LOOKBACK_SECS: i64 = 300;

/// Observations per batch: keeps each ledger transaction short during a large backfill.
const BATCH_SIZE: usize = 200;

/// Cursor updates per cursor-only batch (adopting an older cursor, forgetting removed files).
const CURSOR_BATCH: usize = 5_000;

/// A name time later than the first sighting by more than this is counted as skew (a few
/// seconds between the mail host's clock and ours are not worth a flag).
const SKEW_TOLERANCE_SECS: i64 = 2;

/// The `kind` under which a clamped delivery time is counted in `source_errors_total`.
pub const CLAMPED: &str = "delivery_time_clamped";

#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    #[error("folder {folder}: {path} is not readable: {source}")]
    Folder {
        folder: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An older version's durable cursor of one folder (key: the folder's name): the highest
/// delivery second processed and the unique names processed within [`LOOKBACK_SECS`] of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderCursor {
    pub high: i64,
    pub recent: Vec<(String, i64)>,
}

impl FolderCursor {
    /// Whether that version handled the file `unique` delivered at `at`.
    fn covers(&self, unique: &str, at: i64) -> bool {
        at < self.high - LOOKBACK_SECS || self.recent.iter().any(|(n, _)| n == unique)
    }
}

/// The cursor key of a handled message.
pub fn seen_key(folder: &str, unique: &str) -> String {
    format!("{folder}\t{unique}")
}

/// What this source knows between scans: the handled messages per folder (as committed), an
/// older version's cursors, and when each unhandled file was first listed.
#[derive(Debug, Default)]
struct Known {
    /// Folder → unique name → delivery second.
    seen: BTreeMap<String, HashMap<String, i64>>,
    legacy: BTreeMap<String, FolderCursor>,
    first_seen: HashMap<(String, String), DateTime<Utc>>,
}

impl Known {
    fn from_stored(name: &str, stored: HashMap<String, serde_json::Value>) -> Known {
        let mut known = Known::default();
        for (key, value) in stored {
            match key.split_once('\t') {
                Some((folder, unique)) => {
                    known
                        .seen
                        .entry(folder.to_string())
                        .or_default()
                        .insert(unique.to_string(), value.as_i64().unwrap_or(0));
                }
                None => match serde_json::from_value(value) {
                    Ok(c) => {
                        known.legacy.insert(key, c);
                    }
                    Err(e) => {
                        tracing::warn!(source = %name, folder = %key, error = %e, "Ignoring an unreadable Maildir cursor; the folder is read again.");
                    }
                },
            }
        }
        known
    }

    fn is_seen(&self, folder: &str, unique: &str) -> bool {
        self.seen
            .get(folder)
            .is_some_and(|s| s.contains_key(unique))
    }
}

/// Whether a folder holds inquiries or replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Inbox,
    Sent,
}

/// One message file found by a scan, not handled yet.
#[derive(Debug, Clone)]
struct Found {
    folder: String,
    role: Role,
    path: PathBuf,
    unique: String,
    delivered_at: DateTime<Utc>,
    /// How far the name (or mtime) put the delivery after the first sighting, when clamped.
    clamped_by: Option<chrono::Duration>,
}

/// A change of the cursor that needs no reading.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CursorChange {
    /// Handled by an older version (its folder cursor covered the file): adopted as is.
    Adopt {
        folder: String,
        unique: String,
        at: i64,
    },
    /// The file left the folder: its row goes.
    Forget { folder: String, unique: String },
    /// The older version's folder cursor, used up by a complete scan.
    DropLegacy { folder: String },
}

impl CursorChange {
    fn update(&self) -> CursorUpdate {
        match self {
            CursorChange::Adopt { folder, unique, at } => CursorUpdate {
                key: seen_key(folder, unique),
                value: (*at).into(),
            },
            CursorChange::Forget { folder, unique } => CursorUpdate {
                key: seen_key(folder, unique),
                value: serde_json::Value::Null,
            },
            CursorChange::DropLegacy { folder } => CursorUpdate {
                key: folder.clone(),
                value: serde_json::Value::Null,
            },
        }
    }

    /// Once committed.
    fn apply(&self, known: &mut Known) {
        match self {
            CursorChange::Adopt { folder, unique, at } => {
                known
                    .seen
                    .entry(folder.clone())
                    .or_default()
                    .insert(unique.clone(), *at);
            }
            CursorChange::Forget { folder, unique } => {
                if let Some(set) = known.seen.get_mut(folder) {
                    set.remove(unique);
                }
            }
            CursorChange::DropLegacy { .. } => {}
        }
    }
}

/// What a scan found: the unhandled messages sorted by delivery time, the cursor changes that
/// need no reading, and the number of folders that could not be read.
#[derive(Debug, Default)]
struct Scan {
    found: Vec<Found>,
    cursor_only: Vec<CursorChange>,
    errors: usize,
}

/// Runs the source until `shutdown`. `stored` holds the committed cursors (the keys of the
/// [`CursorUpdate`]s this source sends). Never returns an error: problems are logged, reported
/// through `health` and retried on the next scan.
pub async fn run(
    name: String,
    settings: MaildirSettings,
    stored: HashMap<String, serde_json::Value>,
    sink: EngineSink,
    health: Arc<dyn SourceHealth>,
    shutdown: CancellationToken,
) {
    let mut known = Known::from_stored(&name, stored);
    let mut initial_sync_done = false;
    loop {
        let scan_settings = settings.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let found = scan(&scan_settings, &mut known, Utc::now());
            (known, found)
        })
        .await;
        let found = match scanned {
            Ok((back, found)) => {
                known = back;
                found
            }
            Err(e) => {
                tracing::error!(source = %name, error = %e, "Maildir scan task failed; reading every folder again.");
                known = Known::default();
                Scan {
                    errors: 1,
                    ..Scan::default()
                }
            }
        };
        health.set_up(&name, found.errors == 0);
        if found.errors > 0 {
            health.error(&name, "io");
        }
        let complete_round = found.errors == 0;
        match deliver(
            &name,
            &sink,
            health.as_ref(),
            found,
            &mut known,
            complete_round && !initial_sync_done,
        )
        .await
        {
            Ok(()) => {
                if complete_round {
                    initial_sync_done = true;
                    health.succeeded(&name, Utc::now());
                }
            }
            Err(SinkError::EngineStopped) => {
                tracing::info!(source = %name, "Engine stopped; Maildir source exits.");
                return;
            }
            Err(e) => {
                health.error(&name, "commit");
                tracing::warn!(source = %name, error = %e, "Batch not committed; retrying on the next scan.");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.scan_interval) => {}
        }
    }
}

/// Reads, parses and submits what a scan found, in delivery order and in bounded batches; the
/// handled set grows only with committed batches. With `mark_initial`, the last batch (or an
/// empty one) carries `initial_sync_done`.
async fn deliver(
    name: &str,
    sink: &EngineSink,
    health: &dyn SourceHealth,
    scan: Scan,
    known: &mut Known,
    mark_initial: bool,
) -> Result<(), SinkError> {
    let Scan {
        found, cursor_only, ..
    } = scan;
    // Cursor-only changes first: adoption makes a restart skip those files, forgetting keeps
    // the cursor as large as the folders.
    for chunk in cursor_only.chunks(CURSOR_BATCH) {
        sink.submit(SourceBatch {
            source: name.to_string(),
            observations: Vec::new(),
            cursors: chunk.iter().map(CursorChange::update).collect(),
            initial_sync_done: false,
        })
        .await?;
        for change in chunk {
            change.apply(known);
        }
    }
    if found.is_empty() {
        if mark_initial {
            sink.submit(SourceBatch {
                source: name.to_string(),
                observations: Vec::new(),
                cursors: Vec::new(),
                initial_sync_done: true,
            })
            .await?;
        }
        return Ok(());
    }
    let chunks: Vec<&[Found]> = found.chunks(BATCH_SIZE).collect();
    let last = chunks.len() - 1;
    for (index, chunk) in chunks.into_iter().enumerate() {
        let mut observations = Vec::with_capacity(chunk.len());
        let mut cursors = Vec::with_capacity(chunk.len());
        for item in chunk {
            let seen_at = Utc::now();
            let read_path = item.path.clone();
            let unique = item.unique.clone();
            let read = tokio::task::spawn_blocking(move || match read_message(&read_path) {
                // Renamed between scan and read (new → cur, or a flag change): read it under its
                // new name now, so nothing is marked handled unread.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match relocate(&read_path, &unique) {
                        Some(moved) => read_message(&moved),
                        None => Err(e),
                    }
                }
                other => other,
            })
            .await;
            if let Some(skew) = item.clamped_by {
                health.error(name, CLAMPED);
                tracing::warn!(
                    source = %name,
                    folder = %item.folder,
                    file = %item.unique,
                    skew_seconds = skew.num_seconds(),
                    delivered_at = %item.delivered_at.to_rfc3339(),
                    "Maildir file named with a delivery time later than it was first seen (a mail host with a wrong clock, a restore); clamped to the first sighting."
                );
            }
            let envelope = Envelope {
                source: name.to_string(),
                folder: item.folder.clone(),
                delivered_at: item.delivered_at,
                seen_at,
            };
            let parsed = match read {
                Ok(Ok((bytes, true))) => Some(mail::parse_complete_message(&bytes, &envelope)),
                Ok(Ok((bytes, false))) => Some(mail::parse_message(&bytes, &envelope)),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Gone from the folder altogether (expunged or moved to another folder)
                    // between the scan and the read: there is nothing left to read.
                    health.error(name, "io");
                    tracing::warn!(source = %name, path = %item.path.display(), "Maildir message vanished before it could be read; skipped.");
                    None
                }
                Ok(Err(e)) => {
                    health.error(name, "io");
                    tracing::warn!(source = %name, path = %item.path.display(), error = %e, "Maildir message not readable; skipped.");
                    None
                }
                Err(e) => {
                    health.error(name, "io");
                    tracing::warn!(source = %name, error = %e, "Maildir read task failed.");
                    None
                }
            };
            if let Some(mail) = parsed {
                for problem in &mail.problems {
                    health.error(name, problem.as_str());
                }
                observations.push(match item.role {
                    Role::Inbox => Observation::MessageReceived(mail),
                    Role::Sent => Observation::MessageSent(mail),
                });
            }
            cursors.push(CursorUpdate {
                key: seen_key(&item.folder, &item.unique),
                value: item.delivered_at.timestamp().into(),
            });
        }
        sink.submit(SourceBatch {
            source: name.to_string(),
            observations,
            cursors,
            initial_sync_done: mark_initial && index == last,
        })
        .await?;
        for item in chunk {
            known
                .seen
                .entry(item.folder.clone())
                .or_default()
                .insert(item.unique.clone(), item.delivered_at.timestamp());
            known
                .first_seen
                .remove(&(item.folder.clone(), item.unique.clone()));
        }
    }
    Ok(())
}

/// Lists every configured folder at `now`: the unhandled messages sorted by delivery time, the
/// cursor changes that need no reading, and the folders that could not be read.
fn scan(settings: &MaildirSettings, known: &mut Known, now: DateTime<Utc>) -> Scan {
    let mut folders: Vec<(String, Role)> = Vec::new();
    for f in &settings.inbox_folders {
        if !folders.iter().any(|(n, _)| n == f) {
            folders.push((f.clone(), Role::Inbox));
        }
    }
    for f in &settings.sent_folders {
        if !folders.iter().any(|(n, _)| n == f) {
            folders.push((f.clone(), Role::Sent));
        }
    }
    let mut out = Scan::default();
    for (folder, role) in folders {
        match scan_folder(&settings.path, &folder, role, known, now) {
            Ok(mut items) => {
                out.found.append(&mut items.found);
                out.cursor_only.append(&mut items.cursor_only);
            }
            Err(e) => {
                out.errors += 1;
                tracing::warn!(error = %e, "Maildir folder not readable; retrying on the next scan.");
            }
        }
    }
    out.found.sort_by(|a, b| {
        (a.delivered_at, &a.folder, &a.unique).cmp(&(b.delivered_at, &b.folder, &b.unique))
    });
    out
}

/// The directory of a folder: `INBOX` is the root, `X` is `<root>/.X` (Maildir++).
pub fn folder_path(root: &Path, folder: &str) -> PathBuf {
    if folder.eq_ignore_ascii_case("INBOX") {
        root.to_path_buf()
    } else if folder.starts_with('.') {
        root.join(folder)
    } else {
        root.join(format!(".{folder}"))
    }
}

fn scan_folder(
    root: &Path,
    folder: &str,
    role: Role,
    known: &mut Known,
    now: DateTime<Utc>,
) -> Result<Scan, MaildirError> {
    let dir = folder_path(root, folder);
    let mut out = Scan::default();
    let mut present: HashSet<String> = HashSet::new();
    for sub in ["new", "cur"] {
        let path = dir.join(sub);
        let entries = std::fs::read_dir(&path).map_err(|source| MaildirError::Folder {
            folder: folder.to_string(),
            path: path.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let unique = unique_name(file_name).to_string();
            if !present.insert(unique.clone()) || known.is_seen(folder, &unique) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let named = delivery_time(file_name)
                .or_else(|| meta.modified().ok().map(DateTime::<Utc>::from));
            let Some(named) = named else {
                continue;
            };
            if known
                .legacy
                .get(folder)
                .is_some_and(|c| c.covers(&unique, named.timestamp()))
            {
                out.cursor_only.push(CursorChange::Adopt {
                    folder: folder.to_string(),
                    unique,
                    at: named.timestamp(),
                });
                continue;
            }
            let first_seen = *known
                .first_seen
                .entry((folder.to_string(), unique.clone()))
                .or_insert(now);
            let skew = named - first_seen;
            let (delivered_at, clamped_by) = if skew > chrono::Duration::zero() {
                let flagged = skew.num_seconds() > SKEW_TOLERANCE_SECS;
                (first_seen, flagged.then_some(skew))
            } else {
                (named, None)
            };
            out.found.push(Found {
                folder: folder.to_string(),
                role,
                path: entry.path(),
                unique,
                delivered_at,
                clamped_by,
            });
        }
    }
    // Files that left the folder: forgotten (their rows deleted), so the cursor never grows
    // beyond the folder.
    if let Some(seen) = known.seen.get(folder) {
        out.cursor_only
            .extend(
                seen.keys()
                    .filter(|u| !present.contains(*u))
                    .map(|u| CursorChange::Forget {
                        folder: folder.to_string(),
                        unique: u.clone(),
                    }),
            );
    }
    // An older version's cursor covers what was there at the upgrade, nothing that comes later
    // (a file moved in under an old name must be read).
    if known.legacy.remove(folder).is_some() {
        out.cursor_only.push(CursorChange::DropLegacy {
            folder: folder.to_string(),
        });
    }
    known
        .first_seen
        .retain(|(f, u), _| f != folder || present.contains(u));
    Ok(out)
}

/// The unique part of a Maildir file name: everything before the `:2,FLAGS` info.
pub fn unique_name(file_name: &str) -> &str {
    file_name.split(':').next().unwrap_or(file_name)
}

/// The delivery epoch at the start of a Maildir file name (`1732456789.M1P2.host`), if any.
pub fn delivery_time(file_name: &str) -> Option<DateTime<Utc>> {
    let digits = file_name.split('.').next()?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    DateTime::from_timestamp(digits.parse().ok()?, 0)
}

/// Reads a message's header block and at most [`BODY_PREFIX_BYTES`] of body. Returns the bytes
/// and whether they are the whole file.
/// The current path of the message `unique` that was at `path` (same folder, `cur` or `new`).
fn relocate(path: &Path, unique: &str) -> Option<PathBuf> {
    let folder = path.parent()?.parent()?;
    ["cur", "new"].into_iter().find_map(|sub| {
        std::fs::read_dir(folder.join(sub))
            .ok()?
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| unique_name(n) == unique)
            })
            .map(|e| e.path())
    })
}

fn read_message(path: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::new();
    file.take(HEADER_MAX_BYTES + BODY_PREFIX_BYTES)
        .read_to_end(&mut bytes)?;
    let header_len = mail::headers::header_block(&bytes).len();
    let keep = (header_len as u64 + BODY_PREFIX_BYTES).min(bytes.len() as u64) as usize;
    bytes.truncate(keep);
    let complete = bytes.len() as u64 >= len;
    Ok((bytes, complete))
}

#[cfg(test)]
mod tests;
