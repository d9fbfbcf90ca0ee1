//! Why a configuration could not be loaded.

use std::path::{Path, PathBuf};

/// A configuration that could not be loaded or is not usable. Every variant
/// names the setting (environment variable, flag, file or field) and says why;
/// none is retryable without changing the configuration.
///
/// `--help` and `--version` also arrive here, as [`ConfigError::Cli`]: call
/// `clap::Error::exit` on it to print the text and exit with clap's status
/// (0 for help and version, 2 for usage errors).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable is set to something its field cannot hold.
    /// Secret values are replaced by their length.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Env {
        /// The variable, e.g. `PORT`.
        var: &'static str,
        /// The value it held (redacted for secrets).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A command-line flag has a value its field cannot hold.
    #[error("flag --{flag} {value:?} is invalid: {reason}")]
    Flag {
        /// The flag without its dashes, e.g. `max-frame-size`.
        flag: String,
        /// The value given (redacted for secrets).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// clap rejected the command line, or the user asked for `--help` or
    /// `--version` (see the type docs).
    #[error("{0}")]
    Cli(#[from] clap::Error),
    /// The `--config` file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        /// The path given to `--config`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML for [`super::Config`]: a syntax
    /// error, a value of the wrong type, or an unknown key.
    #[error("config file {}: {source}", path.display())]
    ParseFile {
        /// The path given to `--config`.
        path: PathBuf,
        /// toml's error, with line, column and the offending key.
        source: toml::de::Error,
    },
    /// Every layer parsed, but the resulting value is not usable
    /// ([`super::Config::validate`]).
    #[error("invalid setting `{field}` (env {env}): {reason}")]
    Invalid {
        /// The field (also the TOML key; the flag is its kebab-case form).
        field: &'static str,
        /// The environment variable that sets it.
        env: &'static str,
        /// Why the value was refused.
        reason: String,
    },
    /// A `[[tenants]]` table of the config file is not usable, or tenants
    /// from the file clash with the rest of the configuration.
    #[error("{}", tenant_text(.file.as_deref(), *.number, .external_id.as_deref(), .field, .reason))]
    Tenant {
        /// The config file, once [`super::load_from`] knows it.
        file: Option<PathBuf>,
        /// Which `[[tenants]]` table, counting from 1 in file order; `None`
        /// when the error is about the tables as a whole.
        number: Option<usize>,
        /// Its `external_id`, when it has a readable one.
        external_id: Option<String>,
        /// The key (or server-wide setting) at fault.
        field: String,
        /// Why it was refused.
        reason: String,
    },
}

impl ConfigError {
    /// The error with the config file named, where it is about the file's
    /// tenants.
    pub(super) fn in_file(self, path: Option<PathBuf>) -> Self {
        match self {
            ConfigError::Tenant {
                file: None,
                number,
                external_id,
                field,
                reason,
            } => ConfigError::Tenant {
                file: path,
                number,
                external_id,
                field,
                reason,
            },
            other => other,
        }
    }
}

/// `config file F: [[tenants]] #2 ("acme"): `field`: reason`.
fn tenant_text(
    file: Option<&Path>,
    number: Option<usize>,
    external_id: Option<&str>,
    field: &str,
    reason: &str,
) -> String {
    let mut text = match file {
        Some(f) => format!("config file {}: [[tenants]]", f.display()),
        None => "config [[tenants]]".to_owned(),
    };
    if let Some(n) = number {
        text.push_str(&format!(" #{n}"));
    }
    if let Some(id) = external_id {
        text.push_str(&format!(" ({id:?})"));
    }
    text.push_str(&format!(": `{field}`: {reason}"));
    text
}
