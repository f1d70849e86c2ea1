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

/// A memory line of `/proc/{pid}/status` (`"VmRSS:"`, `"VmHWM:"`, …) in MB.
pub fn memory_mb(pid: impl Display, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
