//! IMAP source.
