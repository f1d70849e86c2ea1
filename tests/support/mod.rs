//! Shared helpers for integration tests: real servers on 127.0.0.1, each in its own temp dir.
#![allow(dead_code)]

pub mod alertmanager;
pub mod bench_store;
pub mod chromium;
pub mod daemon;
pub mod dovecot;
pub mod engine;
pub mod grafana;
pub mod history;
pub mod http;
pub mod ledger;
pub mod ledger_fs;
pub mod oauth2;
pub mod pair;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod slawatchd;
pub mod smtp;
pub mod twilio;
pub mod webhook;
