//! The call-log file source: tails an Asterisk `Master.csv` or `queue_log` with a durable cursor.
//!
//! A thin I/O shell: every `poll_interval` it stats the file and reads the bytes after the
//! cursor, parses the complete records among them with the pure parsers and submits them as one
//! batch together with the new cursor — so a restart resumes exactly after the last committed
//! record. The cursor is the file's inode, the byte offset and line number reached (and, for
//! queue_log, the callers still waiting in a queue). A different inode means the file was rotated
//! (Asterisk appends and closes per record; rotation is external): the new file is read from its
//! start. A file shorter than the offset was truncated: read from the start too. A partial last
//! record (still being written) is left for the next read. A missing or unreadable file sets
//! `source_up 0` and is retried; a malformed record is logged with file and line, counted in
//! `source_errors_total{kind="parse"}` and skipped.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::cdr_csv::{self, Disposition, complete_prefix};
use super::lines::{CallLogFormat, CallLogSettings, QueueCalls, cdr_observation};
use super::queue_log;
use crate::sources::{CursorUpdate, EngineSink, SinkError, SourceBatch, SourceHealth};
use crate::tracker::Observation;

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
    /// The file has more after these bytes.
    more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn read_chunk(path: &Path, cursor: &FileCursor) -> Result<Chunk, TailError> {
    let io = |source| TailError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let inode = meta.ino();
    let restarted = inode != cursor.inode || meta.len() < cursor.offset;
    let offset = if restarted { 0 } else { cursor.offset };
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let want = (meta.len() - offset).min(MAX_READ as u64) as usize;
    let mut bytes = Vec::with_capacity(want);
    file.by_ref()
        .take(want as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(Chunk {
        inode,
        offset,
        restarted,
        more: offset + (bytes.len() as u64) < meta.len(),
        bytes,
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
    let mut cursor: FileCursor = stored
        .get(CURSOR_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let mut initial_sync_done = false;
    let mut was_down = false;
    loop {
        let path = settings.path.clone();
        let read_cursor = cursor.clone();
        let read = tokio::task::spawn_blocking(move || read_chunk(&path, &read_cursor)).await;
        let mut more = false;
        match read {
            Ok(Ok(mut chunk)) => {
                if was_down {
                    tracing::info!(source = %name, path = %settings.path.display(), "Call log readable again.");
                    was_down = false;
                }
                health.set_up(&name, true);
                if chunk.restarted && cursor.inode != 0 {
                    tracing::info!(source = %name, path = %settings.path.display(), "Call log rotated or truncated; reading the new file from its start.");
                }
                let mut next = cursor.clone();
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
                more = chunk.more;
                let changed = next != cursor;
                let mark = !more && !initial_sync_done;
                if changed || mark {
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
                    match sink.submit(batch).await {
                        Ok(()) => {
                            cursor = next;
                            initial_sync_done |= mark;
                            health.succeeded(&name, Utc::now());
                        }
                        Err(SinkError::EngineStopped) => return,
                        Err(e) => {
                            more = false;
                            health.error(&name, "commit");
                            tracing::warn!(source = %name, error = %e, "Batch not committed; retrying.");
                        }
                    }
                } else {
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
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}
