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
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(dotenv_err(one_line(&e.to_string()))),
    };
    parse_dotenv(&text).map_err(dotenv_err)
}

/// The variables of a `.env` file's `text` as dotenvy reads them (of duplicate keys the
/// first wins), or why the file is refused, in one line that does not echo the file: a line
/// dotenvy cannot parse, or an `ASF_*` value it would expand (the rule of `expanded_asf_value` below).
///
/// Public for the `dotenv` fuzz target (`fuzz/`), which checks that every `ASF_*` value
/// it accepts is the value as written, whatever the environment holds.
pub fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, String> {
    let mut vars = HashMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (k, v) = item.map_err(|e| describe_dotenv_error(text, &e))?;
        vars.entry(k).or_insert(v);
    }
    match expanded_asf_value(text) {
        Some(why) => Err(why),
        None => Ok(vars),
    }
}

/// The first `ASF_*` entry whose value a `.env` reader would expand: dotenvy replaces
/// `$NAME` (and `${NAME}`) outside single quotes, so `ASF_INTERNAL_TOKEN=$ecret` would
/// silently become an empty token. Only single quotes keep a `$` as it is; a `$` escaped
/// with `\` is refused too (the rule stays "single quotes"). Called on text dotenvy parsed,
/// so only its accepted grammar matters: entries as [`dotenv_entries`] groups them, and
/// within a value, quotes that may follow each other (`'a'$B` expands `$B`).
fn expanded_asf_value(text: &str) -> Option<String> {
    dotenv_entries(text).find_map(|(line, entry)| {
        let (key, value) = entry_key_value(entry)?;
        (is_asf(key) && expands(value)).then(|| {
            format!(
                "line {line}: the value of {key} contains `$`, which .env files expand (`$NAME` \
                 becomes that variable's value, or nothing); put the value in single quotes"
            )
        })
    })
}

/// Whether a `.env` value (as dotenvy's line parser sees it, after `=`) has a `$` outside
/// single quotes. A space or tab outside quotes ends the value (what follows is a comment).
fn expands(value: &str) -> bool {
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut escaped = false;
    for c in value.chars() {
        match (&quote, c) {
            (Quote::Single, '\'') => quote = Quote::None,
            (Quote::Single, _) => {}
            (_, '$') => return true,
            _ if escaped => escaped = false,
            (_, '\\') => escaped = true,
            (Quote::Double, '"') => quote = Quote::None,
            (Quote::Double, _) => {}
            (Quote::None, '\'') => quote = Quote::Single,
            (Quote::None, '"') => quote = Quote::Double,
            (Quote::None, ' ' | '\t') => return false,
            (Quote::None, _) => {}
        }
    }
    false
}

/// The key and raw value of one `.env` entry (`[export] KEY = value`), or `None` for a
/// blank or comment line (or one dotenvy would refuse). Keys are dotenvy's: a letter or `_`,
/// then letters, digits, `_` and `.`.
fn entry_key_value(entry: &str) -> Option<(&str, &str)> {
    fn key(s: &str) -> Option<(&str, &str)> {
        if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(s.len());
        Some((&s[..end], s[end..].trim_start()))
    }
    let (mut name, mut rest) = key(entry.trim())?;
    if name == "export" && !rest.starts_with('=') {
        (name, rest) = key(rest)?;
    }
    let value = rest.strip_prefix('=')?.trim_start();
    // A value that starts with `#` is a comment: the entry is empty.
    Some((name, if value.starts_with('#') { "" } else { value }))
}

/// The entries of a `.env` text as dotenvy groups its lines, each with the number of its
/// first line: a quoted value may go on over several lines, a line starting with `#` is
/// skipped, and a `#` after whitespace outside quotes ends the entry (a comment).
fn dotenv_entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Complete,
        Space,
        Escape,
        Single,
        SingleEscape,
        Double,
        DoubleEscape,
    }
    let mut lines = text.split_inclusive('\n').enumerate();
    // Where the next line starts in `text`.
    let mut next_at = 0;
    std::iter::from_fn(move || {
        let (index, first) = lines.next()?;
        let start = next_at;
        next_at += first.len();
        if first.trim_start().starts_with('#') {
            return Some((index + 1, ""));
        }
        let mut state = State::Complete;
        let (mut line, mut at) = (first, start);
        loop {
            for (i, c) in line.char_indices() {
                state = match (state, c) {
                    (State::Space, '#') => return Some((index + 1, &text[start..at + i])),
                    (State::Complete | State::Space, '\\') => State::Escape,
                    (State::Complete | State::Space, '"') => State::Double,
                    (State::Complete | State::Space, '\'') => State::Single,
                    (State::Complete, c) if c.is_whitespace() && c != '\n' && c != '\r' => {
                        State::Space
                    }
                    (State::Complete | State::Space | State::Escape, _) => State::Complete,
                    (State::Double, '\\') => State::DoubleEscape,
                    (State::Double, '"') | (State::Single, '\'') => State::Complete,
                    (State::Double | State::DoubleEscape, _) => State::Double,
                    (State::Single, '\\') => State::SingleEscape,
                    (State::Single | State::SingleEscape, _) => State::Single,
                };
            }
            let end = at + line.len();
            if state == State::Complete {
                return Some((index + 1, text[start..end].trim_end_matches(['\n', '\r'])));
            }
            match lines.next() {
                Some((_, next)) => {
                    (line, at) = (next, next_at);
                    next_at += next.len();
                }
                // dotenvy refuses an entry still open at the end; nothing to check.
                None => return Some((index + 1, &text[start..end])),
            }
        }
    })
}

/// One line, without echoing the offending text (it may hold a secret).
fn describe_dotenv_error(content: &str, e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(line, at) => match content.find(line.as_str()) {
            Some(offset) => {
                let number = content[..offset].matches('\n').count() + 1;
                format!(
                    "line {number} cannot be parsed (error at character {at}); expected NAME=value"
                )
            }
            None => {
                format!("a line cannot be parsed (error at character {at}); expected NAME=value")
            }
        },
        other => one_line(&other.to_string()),
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
