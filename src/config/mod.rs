//! Configuration: TOML file + `SLAWATCH__SECTION__KEY` environment → validated [`Settings`].
//!
//! Two phases: the file and the environment are merged into a plain tree, then one validating
//! pass ([`load`]) turns it into typed settings or a list of every problem with its key path.
//! Nothing else in slawatch reads configuration.

mod calls;
mod load;
mod notify;
mod oauth2;
mod oncall;
mod reader;
mod settings;
mod tls;

pub use load::{
    ConfigError, DEFAULT_HEADER_TIMEOUT, DEFAULT_LINK_TTL, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REPORT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, ENV_PREFIX, https_or_loopback, load,
    load_text, load_with_env, resolves_to_loopback,
};
pub use notify::*;
pub use reader::Problem;
pub use settings::*;

#[cfg(test)]
mod tests;
