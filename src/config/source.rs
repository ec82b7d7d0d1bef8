//! Where raw `ASF_*` values come from: the process environment layered over `./.env`, or a
//! map in tests.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::ConfigError;

/// Where raw variable values come from: the process environment, `.env`, or a test map.
pub trait Source {
    /// The raw value of `name`, or `None` when it is not set.
    fn get(&self, name: &str) -> Option<String>;
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The `ASF_*` variables of the process environment layered over those of `.env`
/// (the process environment wins). Snapshotted at [`EnvSource::load`]; never writes the
/// process environment.
pub struct EnvSource {
    vars: HashMap<String, String>,
}

impl fmt::Debug for EnvSource {
    // Values may be secrets: show only which variables are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("EnvSource").field("set", &names).finish()
    }
}

impl EnvSource {
    /// Reads `dir/.env` (a missing file is fine) with dotenvy, then overlays the process
    /// environment. Only `ASF_*` names are kept. Of duplicate keys in `.env` the first wins,
    /// as in dotenvy. A malformed or unreadable `.env` is [`ConfigError::DotEnv`].
    pub fn load(dir: &Path) -> Result<EnvSource, ConfigError> {
        let path = dir.join(".env");
        let file = read_dotenv(&path)?;
        let process = std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            Some((k, v.to_string_lossy().into_owned()))
        });
        Ok(EnvSource::layer(file, process))
    }

    /// `env` over `file`, keeping only `ASF_*` names.
    pub(super) fn layer(
        file: HashMap<String, String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> EnvSource {
        let mut vars: HashMap<String, String> =
            file.into_iter().filter(|(k, _)| is_asf(k)).collect();
        vars.extend(env.into_iter().filter(|(k, _)| is_asf(k)));
        EnvSource { vars }
    }
}

impl Source for EnvSource {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

fn is_asf(name: &str) -> bool {
    name.starts_with("ASF_")
}

pub(super) fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let dotenv_err = |why: String| ConfigError::DotEnv {
        path: path.to_path_buf(),
        why,
    };
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(HashMap::new()),
        Err(e) => return Err(dotenv_err(describe_dotenv_error(path, &e))),
    };
    let mut vars = HashMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| dotenv_err(describe_dotenv_error(path, &e)))?;
        vars.entry(k).or_insert(v);
    }
    let text = std::fs::read_to_string(path).map_err(|e| dotenv_err(e.to_string()))?;
    if let Some(why) = expanded_asf_value(&text) {
        return Err(dotenv_err(why));
    }
    Ok(vars)
}

/// The first `ASF_*` line whose value a `.env` reader would expand: dotenvy replaces
/// `$NAME` (and `${NAME}`) in unquoted and double-quoted values, so `ASF_INTERNAL_TOKEN=$ecret`
/// would silently become an empty token. Only single quotes keep a `$` as it is.
fn expanded_asf_value(text: &str) -> Option<String> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if is_asf(key) && !value.starts_with('\'') && expanded_part(value).contains('$') {
            return Some(format!(
                "line {}: the value of {key} contains `$`, which .env files expand (`$NAME` \
                 becomes that variable's value, or nothing); put the value in single quotes",
                n + 1
            ));
        }
    }
    None
}

/// The part of a `.env` value (unquoted or double-quoted) that a reader expands: a
/// double-quoted value up to its closing quote, an unquoted one up to a `#` that follows
/// whitespace (what comes after either is a comment, and a `$` there is harmless).
fn expanded_part(value: &str) -> &str {
    if let Some(quoted) = value.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return &quoted[..i],
                _ => escaped = false,
            }
        }
        return quoted;
    }
    let mut after_space = false;
    for (i, c) in value.char_indices() {
        if c == '#' && after_space {
            return &value[..i];
        }
        after_space = c.is_whitespace();
    }
    value
}

/// One line, without echoing the offending text (it may hold a secret).
fn describe_dotenv_error(path: &Path, e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(line, at) => {
            let content = std::fs::read_to_string(path).unwrap_or_default();
            match content.find(line.as_str()) {
                Some(offset) => {
                    let number = content[..offset].matches('\n').count() + 1;
                    format!("line {number} cannot be parsed (error at character {at}); expected NAME=value")
                }
                None => format!(
                    "a line cannot be parsed (error at character {at}); expected NAME=value"
                ),
            }
        }
        other => one_line(&other.to_string()),
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
