//! The JSON report: [`ReportData`] as data, field for field (instants RFC 3339 UTC, durations
//! in seconds, ratios between 0 and 1).

use super::ReportData;

/// Writes the report as pretty-printed JSON.
pub fn render(data: &ReportData, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, data).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}
