//! Maildir source.
