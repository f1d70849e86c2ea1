//! Call-log sources: the phone channel.
//!
//! Pure parsers turn the formats phone systems already write into typed records — Asterisk
//! `cdr_csv` ([`cdr_csv`]), Asterisk `queue_log` ([`queue_log`]) — and [`number`] normalises
//! the numbers in them. [`lines`] applies the desk's line configuration (which numbers and
//! queues are support lines, their language and default region, which numbers are extensions)
//! and turns records into [`slawatch_core::tracker::observation::Call`] observations. The thin I/O shell
//! that tails the files with a durable offset + inode cursor is [`tail`].
//!
//! The traps these parsers exist for are listed in `phone-feeds.md`: no header row, quoted
//! fields spanning lines, byte-truncated UTF-8, `ANSWERED` by an IVR or voicemail, several
//! records per call written in hangup order, local-time files across a DST change.

pub mod cdr_csv;
pub mod generic_csv;
pub mod join;
pub mod lines;
pub mod poll;
pub mod queue_log;
pub mod tail;
pub mod twilio;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
pub(crate) use fuzz_tests::fuzz_config;
