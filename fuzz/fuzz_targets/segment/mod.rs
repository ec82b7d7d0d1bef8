//! A path segment as a client writes it, for the targets that name a stream id in
//! `/asf/internal/streams/<id>` (`app_inputs`, `app_http`). Must not panic on any input.

/// `s` percent-encoded as a path segment (every byte but the unreserved ones).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
