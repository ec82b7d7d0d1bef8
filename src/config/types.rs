//! The small value types of the configuration: the secret, the CORS origins, the error.

use std::fmt;
use std::path::PathBuf;

/// A secret that never shows up in logs: `Debug` and `Display` print `****`.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The secret itself; call only where it is really used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ (for tokens).
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// How log lines are written (`ASF_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the event's fields.
    Json,
}

impl LogFormat {
    /// The setting's value for this format.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Which browser origins may connect (CORS for polling and the WebSocket upgrade).
#[derive(Debug, Clone, PartialEq)]
pub enum CorsOrigins {
    /// `*`: every origin.
    Any,
    /// Exact origins such as `https://app.example.com`, without a trailing `/`.
    List(Vec<String>),
}

impl CorsOrigins {
    /// Whether `origin` (an `Origin` header value) is allowed. Scheme and host compare
    /// ASCII case-insensitively; a trailing `/` is ignored.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => {
                let origin = origin.trim().trim_end_matches('/');
                list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigins::Any => f.write_str("*"),
            CorsOrigins::List(list) => f.write_str(&list.join(",")),
        }
    }
}

/// Why the configuration could not be loaded. Display is always one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable is set to a value we do not accept.
    #[error("{name}={} is not valid: {why}", value.escape_debug())]
    Invalid {
        /// The variable, e.g. `ASF_CHUNK_SIZE`.
        name: &'static str,
        /// The raw value as given.
        value: String,
        /// What was expected instead.
        why: String,
    },
    /// A secret is set to a value we do not accept (the value is not shown).
    #[error("{name} is not valid: {why}")]
    InvalidSecret {
        /// The variable, e.g. `ASF_INTERNAL_TOKEN`.
        name: &'static str,
        /// What was expected instead.
        why: String,
    },
    /// The `.env` file exists but cannot be read or parsed.
    #[error("{} is not valid: {why}", path.display())]
    DotEnv {
        /// Path of the `.env` file.
        path: PathBuf,
        /// What went wrong, one line.
        why: String,
    },
}
