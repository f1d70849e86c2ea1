//! Maildir source: for desks running slawatch on the mail host, and the bundled sample mailbox.
//!
//! A thin I/O shell: every `scan_interval` it lists the `new` and `cur` directories of the
//! configured folders (`INBOX` = the root, `X` = `<root>/.X`, Maildir++), reads the messages it
//! has not handled yet (headers plus a bounded body prefix), parses them with the pure
//! [`slawatch_core::mail`] parser and hands them to the engine in delivery-time order, inbox
//! messages as `MessageReceived`, sent ones as `MessageSent`.
//!
//! The delivery time is the epoch in the file name (`1732456789.M1P2.host:2,S`), else the file's
//! mtime. A file's identity is its unique name (before `:`), so a flag change or the move from
//! `new` to `cur` is not a new message. The durable cursor per folder is the highest delivery
//! second processed plus the unique names delivered in the [`LOOKBACK_SECS`] before it: a file
//! whose delivery finished late (its name carries the instant delivery started) is still picked
//! up, and the cursor stays small. Re-reads are harmless anyway: the tracker drops a message whose
//! Message-ID and digest it has seen.

use std::collections::{BTreeMap, HashMap};
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

/// How far behind the newest delivery a late file is still looked for. Deliveries take seconds;
/// five minutes covers a slow filter or a stuck NFS rename.
pub const LOOKBACK_SECS: i64 = 300;

/// Observations per batch: keeps each ledger transaction short during a large backfill.
const BATCH_SIZE: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    #[error("folder {folder}: {path} is not readable: {source}")]
    Folder {
        folder: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The durable cursor of one folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderCursor {
    /// Highest delivery time processed, in epoch seconds.
    pub high: i64,
    /// Unique names processed with their delivery second, within [`LOOKBACK_SECS`] of `high`.
    pub recent: Vec<(String, i64)>,
}

impl FolderCursor {
    fn is_done(&self, unique: &str, at: i64) -> bool {
        at < self.high - LOOKBACK_SECS || self.recent.iter().any(|(n, _)| n == unique)
    }

    fn record(&mut self, unique: &str, at: i64) {
        self.high = self.high.max(at);
        self.recent.push((unique.to_string(), at));
        let floor = self.high - LOOKBACK_SECS;
        self.recent.retain(|(_, t)| *t >= floor);
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
}

/// Runs the source until `shutdown`. `stored` holds the committed cursors by folder name (the
/// keys of the [`CursorUpdate`]s this source sends). Never returns an error: problems are logged,
/// reported through `health` and retried on the next scan.
pub async fn run(
    name: String,
    settings: MaildirSettings,
    stored: HashMap<String, serde_json::Value>,
    sink: EngineSink,
    health: Arc<dyn SourceHealth>,
    shutdown: CancellationToken,
) {
    let mut cursors: BTreeMap<String, FolderCursor> = stored
        .into_iter()
        .filter_map(|(folder, value)| match serde_json::from_value(value) {
            Ok(c) => Some((folder, c)),
            Err(e) => {
                tracing::warn!(source = %name, %folder, error = %e, "Ignoring an unreadable Maildir cursor; the folder is read again.");
                None
            }
        })
        .collect();
    let mut initial_sync_done = false;
    loop {
        let scan_settings = settings.clone();
        let scan_cursors = cursors.clone();
        let scanned =
            tokio::task::spawn_blocking(move || scan(&scan_settings, &scan_cursors)).await;
        let (found, errors) = match scanned {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(source = %name, error = %e, "Maildir scan task failed.");
                (Vec::new(), 1)
            }
        };
        health.set_up(&name, errors == 0);
        if errors > 0 {
            health.error(&name, "io");
        }
        let complete_round = errors == 0;
        match deliver(
            &name,
            &sink,
            health.as_ref(),
            found,
            &mut cursors,
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
/// in-memory cursors advance only with committed batches. With `mark_initial`, the last batch
/// (or an empty one) carries `initial_sync_done`.
async fn deliver(
    name: &str,
    sink: &EngineSink,
    health: &dyn SourceHealth,
    found: Vec<Found>,
    cursors: &mut BTreeMap<String, FolderCursor>,
    mark_initial: bool,
) -> Result<(), SinkError> {
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
        let mut next = cursors.clone();
        let mut observations = Vec::with_capacity(chunk.len());
        let mut touched: Vec<String> = Vec::new();
        for item in chunk {
            let seen_at = Utc::now();
            let read_path = item.path.clone();
            let unique = item.unique.clone();
            let read = tokio::task::spawn_blocking(move || match read_message(&read_path) {
                // Renamed between scan and read (new → cur, or a flag change): read it under its
                // new name now, so the cursor never moves past an unread message.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match relocate(&read_path, &unique) {
                        Some(moved) => read_message(&moved),
                        None => Err(e),
                    }
                }
                other => other,
            })
            .await;
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
            next.entry(item.folder.clone())
                .or_default()
                .record(&item.unique, item.delivered_at.timestamp());
            if !touched.contains(&item.folder) {
                touched.push(item.folder.clone());
            }
        }
        let cursor_updates = touched
            .iter()
            .filter_map(|folder| {
                let value = serde_json::to_value(next.get(folder)?).ok()?;
                Some(CursorUpdate {
                    key: folder.clone(),
                    value,
                })
            })
            .collect();
        sink.submit(SourceBatch {
            source: name.to_string(),
            observations,
            cursors: cursor_updates,
            initial_sync_done: mark_initial && index == last,
        })
        .await?;
        *cursors = next;
    }
    Ok(())
}

/// Lists every configured folder; returns the unhandled messages sorted by delivery time and
/// the number of folders that could not be read.
fn scan(
    settings: &MaildirSettings,
    cursors: &BTreeMap<String, FolderCursor>,
) -> (Vec<Found>, usize) {
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
    let mut found = Vec::new();
    let mut errors = 0;
    let empty = FolderCursor::default();
    for (folder, role) in folders {
        let cursor = cursors.get(&folder).unwrap_or(&empty);
        match scan_folder(&settings.path, &folder, role, cursor) {
            Ok(mut items) => found.append(&mut items),
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, "Maildir folder not readable; retrying on the next scan.");
            }
        }
    }
    found.sort_by(|a, b| {
        (a.delivered_at, &a.folder, &a.unique).cmp(&(b.delivered_at, &b.folder, &b.unique))
    });
    (found, errors)
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
    cursor: &FolderCursor,
) -> Result<Vec<Found>, MaildirError> {
    let dir = folder_path(root, folder);
    let mut out: Vec<Found> = Vec::new();
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
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let unique = unique_name(file_name).to_string();
            let delivered_at = delivery_time(file_name)
                .or_else(|| meta.modified().ok().map(DateTime::<Utc>::from));
            let Some(delivered_at) = delivered_at else {
                continue;
            };
            if cursor.is_done(&unique, delivered_at.timestamp())
                || out.iter().any(|f| f.unique == unique)
            {
                continue;
            }
            out.push(Found {
                folder: folder.to_string(),
                role,
                path: entry.path(),
                unique,
                delivered_at,
            });
        }
    }
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
