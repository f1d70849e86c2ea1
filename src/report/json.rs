//! The JSON report: [`ReportData`] as data, field for field (instants RFC 3339 UTC, durations
//! in seconds, ratios between 0 and 1).

use std::io::Write as _;

use super::ReportData;

/// Writes the report as pretty-printed JSON.
pub fn render(data: &ReportData, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    // The serializer writes many tiny pieces (indentation, quotes, commas): gathered here, they
    // reach `out` in large writes instead of one dynamic call each.
    let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, out);
    serde_json::to_writer_pretty(&mut buffered, data).map_err(std::io::Error::other)?;
    buffered.write_all(b"\n")?;
    buffered.flush()
}
