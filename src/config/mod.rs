//! Configuration: TOML file + `SLAWATCH__SECTION__KEY` environment → validated [`Settings`].

mod settings;

pub use settings::*;
