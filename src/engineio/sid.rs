//! Engine.IO session ids: a validated 20-character token from the URL-safe base64 alphabet.
//!
//! Owns generating ids (from the thread-local CSPRNG) and validating ids that clients send back
//! in `?sid=`. Must not know about sessions, transports or any lookup table: it is a value type.

use std::fmt;
use std::str::FromStr;

/// Number of characters in a session id (engine.io node uses 20 as well).
const LEN: usize = 20;

/// The URL-safe base64 alphabet: every character can appear in a query string unescaped.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An Engine.IO session id.
///
/// Invariant: exactly 20 bytes, each one from the URL-safe base64 alphabet `A-Z a-z 0-9 - _`
/// (so it is ASCII and valid UTF-8).
/// The only ways to build one are [`Sid::generate`] and [`Sid::parse`], which keep it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; LEN]);

impl Sid {
    /// Draws a fresh id: 20 characters of 6 random bits each (120 bits), unguessable by clients.
    pub fn generate() -> Sid {
        let mut raw = [0u8; LEN];
        rand::fill(&mut raw);
        // 256 is a multiple of 64, so masking keeps every character equally likely.
        Sid(raw.map(|b| ALPHABET[usize::from(b & 63)]))
    }

    /// Validates an id sent by a client; `None` unless it is 20 URL-safe base64 characters.
    pub fn parse(s: &str) -> Option<Sid> {
        let bytes: [u8; LEN] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            .then_some(Sid(bytes))
    }

    /// The id as text, e.g. for the open packet or a log field.
    pub fn as_str(&self) -> &str {
        // Every byte is ASCII by construction, so this never takes the fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

/// The error of [`Sid::from_str`]: the text is not a valid session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an Engine.IO session id (expected 20 URL-safe base64 characters)")]
pub struct InvalidSid;

impl FromStr for Sid {
    type Err = InvalidSid;

    fn from_str(s: &str) -> Result<Sid, InvalidSid> {
        Sid::parse(s).ok_or(InvalidSid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: HashSet<Sid> = (0..1000).map(|_| Sid::generate()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.as_str().len(), 20);
            assert_eq!(Sid::parse(id.as_str()), Some(*id));
        }
    }

    #[test]
    fn parse_round_trips_through_display_and_from_str() {
        let text = "AbCd-_0123456789xyzW";
        let sid: Sid = text.parse().unwrap();
        assert_eq!(sid.as_str(), text);
        assert_eq!(sid.to_string(), text);
        assert_eq!(format!("{sid:?}"), format!("Sid({text})"));
    }

    #[test]
    fn parse_rejects_malformed_ids() {
        for bad in [
            "",
            "short",
            "AbCd-_0123456789xyz",   // 19
            "AbCd-_0123456789xyzWX", // 21
            "AbCd+/0123456789xyzW",  // standard-alphabet characters
            "AbCd-_0123456789xyz=",  // padding
            "AbCd-_012345678é9xy",   // non-ASCII, 20 bytes
            "AbCd-_0123456789xyz\0", // NUL
        ] {
            assert_eq!(Sid::parse(bad), None, "{bad:?}");
            assert_eq!(bad.parse::<Sid>(), Err(InvalidSid));
        }
    }
}
