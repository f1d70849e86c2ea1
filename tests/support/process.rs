//! What a process has cost, from Linux `/proc`: for benchmarks, which report CPU time (steadier
//! than wall time on a shared machine) and memory beside their wall-clock figures.

use std::fmt::Display;

/// User plus system CPU seconds used so far by process `pid` (`"self"` or a number), all its
/// threads, at the kernel's usual 100 ticks a second.
pub fn cpu_seconds(pid: impl Display) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name (which may hold spaces); utime and stime are
    // fields 14 and 15 of the line.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The value of a line of `/proc/{pid}/status` (`"VmRSS:"`, `"THP_enabled:"`, …), as written.
pub fn status_field(pid: impl Display, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(field))?;
    Some(value.trim().to_string())
}

/// A memory line of `/proc/{pid}/status` (`"VmRSS:"`, `"VmHWM:"`, …) in MB.
pub fn memory_mb(pid: impl Display, field: &str) -> Option<f64> {
    let kb: f64 = status_field(pid, field)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
