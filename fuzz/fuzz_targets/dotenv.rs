//! Fuzz target: `asf::config::parse_dotenv`, the `.env` reader (dotenvy, then ASF's refusal
//! of `ASF_*` values that dotenvy would expand).
//!
//! The input is the file's text (non-UTF-8 inputs are skipped: the file is read as UTF-8).
//! Checks, besides "never panics", that every `ASF_*` value of an accepted file is the value
//! as written:
//! - it does not depend on the environment: with every short name the text could expand
//!   (`$NAME`, `${NAME}`; see [`expandable_names`]) set to a sentinel in the process
//!   environment, the file reads the same;
//! - no `$` went missing: dotenvy on the text with each `$` replaced by a private-use
//!   character (which it keeps as it is), when that text parses, gives the same value with
//!   the character put back as `$`.
//!
//! Must not test anything else. Sets and restores process environment variables (libFuzzer
//! runs one input at a time in one thread).

#![no_main]

use std::collections::HashMap;
use std::ffi::OsString;

use asf::config::parse_dotenv;
use libfuzzer_sys::fuzz_target;

/// What stands in for `$` in the second check: a character dotenvy gives no meaning to.
const MARK: char = '\u{E000}';

/// The names dotenvy could look up for a `$` in `text` (the alphanumeric run after it, and
/// what a `${...}` block holds) that are one or two ASCII letters or digits. glibc keeps
/// every `NAME=value` string ever set, so setting whatever names the fuzzer makes up grows
/// the process past libFuzzer's memory limit within minutes; the short names are a bounded
/// set (3,906), which the fuzzer reaches easily. Longer names are left to the `$` check.
fn expandable_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices('$') {
        let rest = &text[at + 1..];
        let run: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        names.push(run);
        if let Some(block) = rest.strip_prefix('{') {
            names.push(block.split('}').next().unwrap_or_default().to_owned());
        }
    }
    names.retain(|n| (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric()));
    names.sort();
    names.dedup();
    names
}

/// The `ASF_*` entries of `vars`.
fn asf(vars: &HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut asf: Vec<_> = vars.iter().filter(|(k, _)| k.starts_with("ASF_")).collect();
    asf.sort();
    asf
}

/// The file read with each of `names` set to a sentinel, the environment then restored.
fn read_with_sentinels(text: &str, names: &[String]) -> Result<HashMap<String, String>, String> {
    let saved: Vec<(&String, Option<OsString>)> =
        names.iter().map(|n| (n, std::env::var_os(n))).collect();
    for name in names {
        std::env::set_var(name, "\u{1}sentinel");
    }
    let read = parse_dotenv(text);
    for (name, value) in saved {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
    read
}

/// dotenvy's own reading of `text` (first of duplicate keys wins), if it parses.
fn dotenvy_reads(text: &str) -> Option<HashMap<String, String>> {
    let mut vars = HashMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (k, v) = item.ok()?;
        vars.entry(k).or_insert(v);
    }
    Some(vars)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(vars) = parse_dotenv(text) else {
        return;
    };

    let names = expandable_names(text);
    if !names.is_empty() {
        let again = read_with_sentinels(text, &names);
        let again = again.expect("an accepted file is accepted whatever the environment holds");
        assert_eq!(
            asf(&vars),
            asf(&again),
            "an accepted ASF_* value depends on the environment"
        );
    }

    if text.contains('$') && !text.contains(MARK) {
        if let Some(marked) = dotenvy_reads(&text.replace('$', &MARK.to_string())) {
            for (key, value) in asf(&vars) {
                let as_written = marked.get(key).map(|v| v.replace(MARK, "$"));
                assert_eq!(
                    Some(value),
                    as_written.as_ref(),
                    "{key}: an accepted value lost a `$`"
                );
            }
        }
    }
});
