//! The call-log file source: tails an Asterisk `Master.csv` or `queue_log` with a durable cursor.
//!
//! A thin I/O shell: every `poll_interval` it stats the file and reads the bytes after the
//! cursor, parses the complete records among them with the pure parsers and submits them as one
//! batch together with the new cursor — so a restart resumes exactly after the last committed
//! record. The cursor is the file's inode, the byte offset and line number reached (and, for
//! queue_log, the callers still waiting in a queue). A different inode means the file was rotated
//! (Asterisk appends and closes per record; rotation is external): records appended to the old
//! file after the last read and before the rotation are read first — through the handle kept
//! open since the last read, or, after a restart, by finding the old inode again in the same
//! directory (`Master.csv.1`, `Master.csv-20260105`, …) — and then the new file is read from its
//! start. A file shorter than the offset was truncated: read from the start. A partial last
//! record (still being written) is left for the next read. A missing or unreadable file sets
//! `source_up 0` and is retried; a malformed record is logged with file and line, counted in
//! `source_errors_total{kind="parse"}` and skipped.
//!
//! During a backfill three things overlap: this source parses a chunk while the engine decides
//! the one before and writes the one before that to the ledger ([`MAX_IN_FLIGHT`] batches are
//! submitted at once). The engine commits batches in the order they were submitted and refuses
//! every batch after one it could not write, so cursors are committed in order, and a failed
//! commit makes the source read again from the last committed cursor.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use slawatch_core::tracker::Observation;
use tokio_util::sync::CancellationToken;

use super::cdr_csv::{self, Disposition, complete_prefix};
use super::lines::{CallLogFormat, CallLogSettings, QueueCalls, cdr_observation};
use super::queue_log;
use crate::sources::{CursorUpdate, EngineSink, SinkError, SourceBatch};
use crate::telemetry::SourceHealth;

/// Bytes read at most per batch: a 1,000,000-row backfill goes in ~1 MiB transactions.
const MAX_READ: usize = 1 << 20;

/// Key of the cursor in the source's cursor table.
const CURSOR_KEY: &str = "file";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileCursor {
    pub inode: u64,
    pub offset: u64,
    /// Lines before `offset` (for error messages).
    pub line: u64,
    /// queue_log only: callers in a queue without an outcome yet.
    #[serde(default)]
    pub queue: QueueCalls,
}

/// What one read found.
struct Chunk {
    inode: u64,
    /// Offset the bytes start at (0 after rotation or truncation).
    offset: u64,
    restarted: bool,
    bytes: Vec<u8>,
    /// The file has more after these bytes (or, for a rotated file, a new file follows).
    more: bool,
    /// The bytes end a file that was rotated away: nothing more will be appended to it, so an
    /// incomplete record at its end will never be completed.
    rotated_end: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The call-log file the source is reading, kept open between reads so that a file rotated
/// (renamed or deleted) after the last read can still be read to its end.
#[derive(Debug, Default)]
pub struct OpenFile {
    held: Option<(u64, std::fs::File)>,
}

/// Reads at most [`MAX_READ`] bytes from `offset`; `more` if the file is longer.
fn read_from(file: &mut std::fs::File, offset: u64, len: u64) -> std::io::Result<(Vec<u8>, bool)> {
    file.seek(SeekFrom::Start(offset))?;
    let want = len.saturating_sub(offset).min(MAX_READ as u64) as usize;
    let mut bytes = Vec::with_capacity(want);
    file.by_ref().take(want as u64).read_to_end(&mut bytes)?;
    let more = offset + (bytes.len() as u64) < len;
    Ok((bytes, more))
}

/// The file with inode `inode` among the regular files beside `path` (a rotated call log renamed
/// in its directory), opened; `None` if there is none any more.
fn find_by_inode(path: &Path, inode: u64) -> Option<std::fs::File> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|entry| {
            entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.ino() == inode)
        })
        .find_map(|entry| std::fs::File::open(entry.path()).ok())
}

/// Reads the next bytes after `cursor`: from the file at `path`, or, if that is a new file (the
/// old one was rotated), first what is left of the old one.
fn read_chunk(path: &Path, cursor: &FileCursor, open: &mut OpenFile) -> Result<Chunk, TailError> {
    let io = |source| TailError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let inode = meta.ino();
    if cursor.inode != 0 && inode != cursor.inode {
        let old = match open.held.take() {
            Some((held, file)) if held == cursor.inode => Some(file),
            _ => find_by_inode(path, cursor.inode),
        };
        if let Some(mut old) = old {
            let len = old.metadata().map_err(io)?.len();
            if len > cursor.offset {
                let (bytes, more) = read_from(&mut old, cursor.offset, len).map_err(io)?;
                open.held = Some((cursor.inode, old));
                return Ok(Chunk {
                    inode: cursor.inode,
                    offset: cursor.offset,
                    restarted: false,
                    bytes,
                    more: true,
                    rotated_end: !more,
                });
            }
        }
    }
    let restarted = inode != cursor.inode || meta.len() < cursor.offset;
    let offset = if restarted { 0 } else { cursor.offset };
    let (bytes, more) = read_from(&mut file, offset, meta.len()).map_err(io)?;
    open.held = Some((inode, file));
    Ok(Chunk {
        inode,
        offset,
        restarted,
        more,
        bytes,
        rotated_end: false,
    })
}

/// Parses the complete records of a chunk: observations, the bytes consumed, lines consumed, and
/// problems (`kind`, message) to count and log.
pub fn parse_chunk(
    source: &str,
    settings: &CallLogSettings,
    bytes: &[u8],
    first_line: u64,
    queue: &mut QueueCalls,
) -> (Vec<Observation>, usize, u64, Vec<(&'static str, String)>) {
    let seen_at = Utc::now();
    let mut observations = Vec::new();
    let mut problems = Vec::new();
    let cut = match settings.format {
        CallLogFormat::Cdr { .. } | CallLogFormat::Generic(_) => complete_prefix(bytes),
        CallLogFormat::QueueLog => bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1),
    };
    let complete = &bytes[..cut];
    let lines = complete.iter().filter(|b| **b == b'\n').count() as u64;
    match &settings.format {
        CallLogFormat::Generic(map) => {
            for (_, row) in super::generic_csv::parse(complete, first_line, map) {
                match row {
                    Ok(row) => observations.push(super::generic_csv::observation(
                        source,
                        &row,
                        &settings.lines,
                        seen_at,
                    )),
                    Err(e) => problems.push(("parse", e.to_string())),
                }
            }
        }
        CallLogFormat::Cdr { layout, zone } => {
            for (_, row) in cdr_csv::parse(complete, first_line, *layout, *zone) {
                match row {
                    Ok(row) => {
                        if let Disposition::Unknown(d) = &row.disposition {
                            problems.push((
                                "unknown_value",
                                format!("unknown disposition {d:?} (recorded as unknown)"),
                            ));
                        }
                        observations.push(cdr_observation(source, &row, &settings.lines, seen_at));
                    }
                    Err(e) => problems.push(("parse", e.to_string())),
                }
            }
        }
        CallLogFormat::QueueLog => {
            for (i, text) in complete.split(|b| *b == b'\n').enumerate() {
                let text = String::from_utf8_lossy(text);
                if text.trim().is_empty() {
                    continue;
                }
                match queue_log::parse_line(&text, first_line + i as u64) {
                    Ok(entry) => {
                        if !entry.event.is_known() {
                            problems.push((
                                "unknown_value",
                                format!(
                                    "line {}: unknown event {:?} (ignored)",
                                    first_line + i as u64,
                                    entry.event
                                ),
                            ));
                        }
                        observations.extend(queue.observe(
                            source,
                            &entry,
                            &settings.lines,
                            seen_at,
                        ));
                    }
                    Err(e) => problems.push(("parse", e.to_string())),
                }
            }
        }
    }
    (observations, cut, lines, problems)
}

/// A batch handed to the engine and not yet known to be committed.
struct InFlight {
    commit: tokio::task::JoinHandle<Result<(), SinkError>>,
    /// The cursor once it is committed.
    cursor: FileCursor,
    /// The batch completes the source's first sync.
    marks_sync: bool,
}

/// Batches handed to the engine at once: while it writes one to the ledger it decides the next,
/// so a backfill keeps both busy.
const MAX_IN_FLIGHT: usize = 2;

/// What became of the oldest batch in flight.
enum Settled {
    /// Its cursor is committed.
    Committed(FileCursor),
    /// Not committed, and neither is any later batch; `marked` if one of them marked the first
    /// sync.
    Failed {
        marked: bool,
    },
    EngineStopped,
}

/// Waits for the oldest batch in flight. If it was not committed, no later one was either (the
/// engine writes batches in order and refuses those after a failed one): they are waited for
/// and dropped with it, and reading starts again from the committed cursor.
async fn settle_oldest(
    name: &str,
    in_flight: &mut VecDeque<InFlight>,
    health: &dyn SourceHealth,
) -> Settled {
    let Some(oldest) = in_flight.pop_front() else {
        return Settled::Failed { marked: false };
    };
    let failure = match oldest.commit.await {
        Ok(Ok(())) => {
            health.succeeded(name, Utc::now());
            return Settled::Committed(oldest.cursor);
        }
        Ok(Err(SinkError::EngineStopped)) => return Settled::EngineStopped,
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("the commit task failed: {e}"),
    };
    health.error(name, "commit");
    tracing::warn!(source = %name, error = %failure, "Batch not committed; retrying.");
    let mut marked = oldest.marks_sync;
    for later in in_flight.drain(..) {
        marked |= later.marks_sync;
        let _ = later.commit.await;
    }
    Settled::Failed { marked }
}

/// Runs the source until `shutdown`. Never returns an error: problems are logged, reported
/// through `health` and retried on the next poll.
pub async fn run(
    name: String,
    settings: CallLogSettings,
    stored: HashMap<String, serde_json::Value>,
    sink: EngineSink,
    health: Arc<dyn SourceHealth>,
    shutdown: CancellationToken,
) {
    // `committed` is what the ledger holds; `ahead` is where reading goes on, past a batch that
    // may still be in flight.
    let mut committed: FileCursor = stored
        .get(CURSOR_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let mut ahead = committed.clone();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let open = Arc::new(std::sync::Mutex::new(OpenFile::default()));
    let mut initial_sync_done = false;
    let mut was_down = false;
    loop {
        let path = settings.path.clone();
        let read_cursor = ahead.clone();
        let read_open = open.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut open = read_open.lock().unwrap_or_else(|e| e.into_inner());
            read_chunk(&path, &read_cursor, &mut open)
        })
        .await;
        let mut more = false;
        match read {
            Ok(Ok(mut chunk)) => {
                if was_down {
                    tracing::info!(source = %name, path = %settings.path.display(), "Call log readable again.");
                    was_down = false;
                }
                health.set_up(&name, true);
                if chunk.restarted && ahead.inode != 0 {
                    tracing::info!(source = %name, path = %settings.path.display(), "Call log rotated or truncated; reading the new file from its start.");
                }
                let mut next = ahead.clone();
                if chunk.restarted {
                    next.inode = chunk.inode;
                    next.offset = 0;
                    next.line = 0;
                }
                // Parsing a full read is CPU work (milliseconds): off the async threads.
                let (parse_name, parse_settings, bytes, first_line, mut queue) = (
                    name.clone(),
                    settings.clone(),
                    std::mem::take(&mut chunk.bytes),
                    next.line + 1,
                    std::mem::take(&mut next.queue),
                );
                let parsed = tokio::task::spawn_blocking(move || {
                    let out =
                        parse_chunk(&parse_name, &parse_settings, &bytes, first_line, &mut queue);
                    (out, bytes, queue)
                })
                .await;
                let ((observations, used, lines, problems), bytes, queue) = match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        health.error(&name, "io");
                        tracing::error!(source = %name, error = %e, "Call log parse task failed.");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(settings.poll_interval) => {}
                        }
                        continue;
                    }
                };
                chunk.bytes = bytes;
                next.queue = queue;
                for (kind, message) in &problems {
                    health.error(&name, kind);
                    tracing::warn!(source = %name, file = %settings.path.display(), "{message}");
                }
                next.offset = chunk.offset + used as u64;
                next.line += lines;
                // A record larger than a whole read can never complete: skip it rather than stall.
                if used == 0 && chunk.bytes.len() >= MAX_READ {
                    health.error(&name, "parse");
                    tracing::warn!(source = %name, file = %settings.path.display(), line = next.line + 1, "Record longer than {MAX_READ} bytes skipped.");
                    next.offset = chunk.offset + chunk.bytes.len() as u64;
                }
                // Nothing will ever complete a partial record at the end of a rotated file.
                if chunk.rotated_end && used < chunk.bytes.len() {
                    health.error(&name, "parse");
                    tracing::warn!(source = %name, file = %settings.path.display(), line = next.line + 1, "Incomplete last record of the rotated call log skipped.");
                    next.offset = chunk.offset + chunk.bytes.len() as u64;
                }
                more = chunk.more;
                let changed = next != ahead;
                let mark = !more && !initial_sync_done;
                if changed || mark {
                    // Cursors are committed in order: the oldest batch first.
                    if in_flight.len() == MAX_IN_FLIGHT {
                        match settle_oldest(&name, &mut in_flight, health.as_ref()).await {
                            Settled::Committed(cursor) => committed = cursor,
                            Settled::EngineStopped => return,
                            Settled::Failed { marked } => {
                                // Read again from what is committed; this chunk is dropped.
                                ahead = committed.clone();
                                initial_sync_done &= !marked;
                                tokio::select! {
                                    _ = shutdown.cancelled() => return,
                                    _ = tokio::time::sleep(settings.poll_interval) => {}
                                }
                                continue;
                            }
                        }
                    }
                    let batch = SourceBatch {
                        source: name.clone(),
                        observations,
                        cursors: serde_json::to_value(&next)
                            .ok()
                            .map(|value| CursorUpdate {
                                key: CURSOR_KEY.to_string(),
                                value,
                            })
                            .into_iter()
                            .collect(),
                        initial_sync_done: mark,
                    };
                    let sink = sink.clone();
                    in_flight.push_back(InFlight {
                        commit: tokio::spawn(async move { sink.submit(batch).await }),
                        cursor: next.clone(),
                        marks_sync: mark,
                    });
                    ahead = next;
                    // Marked once; if that batch fails, it is marked again with the next one.
                    initial_sync_done |= mark;
                } else if in_flight.is_empty() {
                    health.succeeded(&name, Utc::now());
                }
            }
            Ok(Err(e)) => {
                health.set_up(&name, false);
                health.error(&name, "io");
                if !was_down {
                    tracing::warn!(source = %name, error = %e, "Call log not readable; retrying.");
                    was_down = true;
                }
            }
            Err(e) => {
                health.error(&name, "io");
                tracing::error!(source = %name, error = %e, "Call log read task failed.");
            }
        }
        if more {
            if shutdown.is_cancelled() {
                return;
            }
            continue;
        }
        // Caught up: wait for the last batches before sleeping, so what was read is committed
        // (and visible) without waiting a poll interval.
        while !in_flight.is_empty() {
            match settle_oldest(&name, &mut in_flight, health.as_ref()).await {
                Settled::Committed(cursor) => committed = cursor,
                Settled::EngineStopped => return,
                Settled::Failed { marked } => {
                    ahead = committed.clone();
                    initial_sync_done &= !marked;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until caught up, as the source does, and returns the text read per inode.
    /// The text of each read, without its inode.
    fn texts(read: &[(u64, String)]) -> Vec<&str> {
        read.iter().map(|(_, t)| t.as_str()).collect()
    }

    fn read_all(path: &Path, cursor: &mut FileCursor, open: &mut OpenFile) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        loop {
            let chunk = read_chunk(path, cursor, open).unwrap();
            if chunk.restarted {
                cursor.inode = chunk.inode;
                cursor.offset = 0;
            }
            cursor.offset = chunk.offset + chunk.bytes.len() as u64;
            if !chunk.bytes.is_empty() {
                out.push((chunk.inode, String::from_utf8(chunk.bytes).unwrap()));
            }
            if !chunk.more {
                return out;
            }
        }
    }

    #[test]
    fn rows_appended_before_a_rename_are_read_from_the_held_file_then_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        write(&path, "a\n");
        let (mut cursor, mut open) = (FileCursor::default(), OpenFile::default());
        assert_eq!(read_all(&path, &mut cursor, &mut open).len(), 1);
        let old_inode = cursor.inode;
        write(&path, "b\n");
        std::fs::rename(&path, dir.path().join("Master.csv.1")).unwrap();
        write(&path, "c\n");
        let read = read_all(&path, &mut cursor, &mut open);
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!(read[0], (old_inode, "b\n".to_string()));
        assert_eq!(read[1].1, "c\n");
        assert_ne!(read[1].0, old_inode);
        assert!(read_all(&path, &mut cursor, &mut open).is_empty());
    }

    #[test]
    fn after_a_restart_the_rotated_file_is_found_by_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        write(&path, "a\n");
        let mut cursor = FileCursor::default();
        read_all(&path, &mut cursor, &mut OpenFile::default());
        write(&path, "b\n");
        std::fs::rename(&path, dir.path().join("Master.csv-20260105")).unwrap();
        write(&path, "c\n");
        // A fresh handle, as after a restart: nothing is held open.
        let read = read_all(&path, &mut cursor, &mut OpenFile::default());
        assert_eq!(texts(&read), ["b\n", "c\n"]);
    }

    #[test]
    fn a_rotated_file_deleted_after_the_last_read_is_still_read_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        write(&path, "a\n");
        let (mut cursor, mut open) = (FileCursor::default(), OpenFile::default());
        read_all(&path, &mut cursor, &mut open);
        write(&path, "b\n");
        std::fs::remove_file(&path).unwrap();
        write(&path, "c\n");
        let read = read_all(&path, &mut cursor, &mut open);
        assert_eq!(texts(&read), ["b\n", "c\n"]);
    }

    #[test]
    fn a_truncated_file_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        write(&path, "a\nb\n");
        let (mut cursor, mut open) = (FileCursor::default(), OpenFile::default());
        read_all(&path, &mut cursor, &mut open);
        std::fs::write(&path, "c\n").unwrap();
        let read = read_all(&path, &mut cursor, &mut open);
        assert_eq!(texts(&read), ["c\n"]);
    }

    struct Quiet;

    impl SourceHealth for Quiet {
        fn set_up(&self, _: &str, _: bool) {}
        fn succeeded(&self, _: &str, _: chrono::DateTime<Utc>) {}
        fn error(&self, _: &str, _: &str) {}
    }

    fn in_flight(line: u64, outcome: Result<(), SinkError>, marks_sync: bool) -> InFlight {
        InFlight {
            commit: tokio::spawn(async move { outcome }),
            cursor: FileCursor {
                line,
                ..FileCursor::default()
            },
            marks_sync,
        }
    }

    #[tokio::test]
    async fn batches_settle_in_order_and_a_failure_drops_the_later_ones() {
        let mut batches = VecDeque::from([
            in_flight(10, Ok(()), false),
            in_flight(20, Err(SinkError::CommitFailed("disk full".into())), false),
            in_flight(30, Ok(()), true),
        ]);
        match settle_oldest("cdr", &mut batches, &Quiet).await {
            Settled::Committed(cursor) => assert_eq!(cursor.line, 10),
            _ => panic!("the first batch was committed"),
        }
        // The second failed: the third cannot count even though it says it was committed (the
        // engine refuses a batch after a failed one), and its first-sync mark is reported.
        match settle_oldest("cdr", &mut batches, &Quiet).await {
            Settled::Failed { marked } => assert!(marked),
            _ => panic!("the second batch failed"),
        }
        assert!(batches.is_empty());
    }
}
