//! Who may reach the internal endpoints: the bearer token of `ASF_INTERNAL_TOKEN`, or, when
//! no token is set, a request addressed to this machine by an IP address, `localhost` or a
//! name the operator listed in `ASF_INTERNAL_HOSTS`.
//!
//! The second rule is the guard against DNS rebinding: a web page on a name its owner
//! controls (`evil.example`) can have that name resolve to the server's address, and the
//! visitor's browser then sends the page's requests to ASF as same-origin requests, with
//! `Host: evil.example`. An IP literal or `localhost` cannot be rebound, and a browser
//! always sends the name it connected to; so a tokenless internal request naming any other
//! host is refused, but for the names of `ASF_INTERNAL_HOSTS`, which the operator vouches for
//! (the names the deployment's own services call ASF by). With a token set, the token protects the endpoints (a page cannot know
//! it), and the Host is not looked at. Pure: no IO.

use std::net::{Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

/// The internal token as requests are checked against it: its SHA-256, computed once.
///
/// A comparison of the token's bytes with a given token's takes time that follows the
/// longer of the two (or the shorter), so a client varying the length of what it sends
/// could learn the configured token's length. Here the given token is hashed (time that
/// follows its own length, which the client chose) and two 32-byte digests are compared
/// without an early exit: the time depends neither on where they differ nor on the
/// configured token's length. Two different tokens with one digest would be a SHA-256
/// collision.
#[derive(Clone)]
pub(super) struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of the configured `token`.
    pub(super) fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `given` is the token.
    pub(super) fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let diff = self
            .0
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Keeps the compiler from turning the fold into a comparison that stops early.
        std::hint::black_box(diff) == 0
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(****)")
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub(super) fn bearer(header: Option<&str>) -> &str {
    let Some(value) = header else { return "" };
    let value = value.trim_start();
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => "",
    }
}

/// The answer text of an internal request refused by the Host guard.
pub(super) const FOREIGN_HOST: &str = "Forbidden: with no ASF_INTERNAL_TOKEN set, the internal endpoints answer only requests addressed to an IP address, localhost or a name in ASF_INTERNAL_HOSTS (Host header); set ASF_INTERNAL_TOKEN, or list the name in ASF_INTERNAL_HOSTS, to call them by name";

/// Whether a tokenless internal request with this `Host` header may pass: no header (not
/// a browser: every browser sends one), or a host that is an IP address (`127.0.0.1`,
/// `[::1]`), `localhost` or one of the `listed` names (lower-case, as the configuration
/// keeps them), with or without a port. Public for the `app_inputs` fuzz target.
pub fn host_may_reach_internal(host: Option<&str>, listed: &[String]) -> bool {
    let Some(host) = host else { return true };
    let host = host.trim();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        return after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if !port.is_none_or(is_port) {
        return false;
    }
    name.parse::<Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || listed.iter().any(|l| name.eq_ignore_ascii_case(l))
}

/// A port in a Host header: digits (RFC 3986 allows an empty port too).
fn is_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_itself_only() {
        let token = TokenDigest::of("s3cret-token");
        assert!(token.matches("s3cret-token"));
        for other in [
            "",
            "s",
            "s3cret-toke",
            "s3cret-tokeN",
            "s3cret-token ",
            "s3cret-token-and-more",
            "S3CRET-TOKEN",
            "x3cret-token",
        ] {
            assert!(!token.matches(other), "{other:?} matched");
        }
        // Lengths on both sides of the configured one, long ones included.
        for len in 0..100 {
            assert!(!token.matches(&"s".repeat(len)), "{len} bytes matched");
        }
        let long = "k".repeat(10_000);
        assert!(TokenDigest::of(&long).matches(&long));
        assert!(!TokenDigest::of(&long).matches(&long[1..]));
        assert!(TokenDigest::of("").matches(""));
        assert!(!TokenDigest::of("").matches("a"));
        assert_eq!(format!("{token:?}"), "TokenDigest(****)");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(Some("Bearer t0k")), "t0k");
        assert_eq!(bearer(Some("bearer t0k")), "t0k");
        assert_eq!(bearer(Some("BEARER  t0k ")), "t0k");
        assert_eq!(bearer(Some("Basic t0k")), "");
        assert_eq!(bearer(Some("Bearer")), "");
        assert_eq!(bearer(None), "");
    }

    #[test]
    fn ip_literals_and_localhost_pass_names_do_not() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:5006",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:5006",
            "[fe80::1]:",
            "localhost",
            "LOCALHOST:5006",
            " localhost:1 ",
        ] {
            assert!(host_may_reach_internal(Some(ok), &[]), "{ok:?} refused");
        }
        assert!(host_may_reach_internal(None, &[]), "no Host header");
        for bad in [
            "evil.example",
            "evil.example:5006",
            "asf",
            "asf:5006",
            "localhost.",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "127.1",
            "0x7f000001",
            "::1",
            "[::1",
            "[evil.example]:5006",
            "[::1]x",
            "127.0.0.1:50x6",
            "127.0.0.1:5006:1",
            "",
        ] {
            assert!(!host_may_reach_internal(Some(bad), &[]), "{bad:?} passed");
        }
    }

    #[test]
    fn listed_names_pass_exactly_others_do_not() {
        let listed = ["asf".to_owned(), "asf.internal".to_owned()];
        for ok in ["asf", "ASF:5006", "asf:", "asf.internal", "Asf.Internal:80"] {
            assert!(host_may_reach_internal(Some(ok), &listed), "{ok:?} refused");
        }
        for bad in [
            "asf.",
            "asf.evil.example",
            "evil-asf",
            "internal",
            "asf.internal.evil.example",
            "asf:50x6",
            "[asf]",
            "evil.example",
        ] {
            assert!(
                !host_may_reach_internal(Some(bad), &listed),
                "{bad:?} passed"
            );
        }
        assert!(host_may_reach_internal(Some("127.0.0.1:1"), &listed));
        assert!(host_may_reach_internal(Some("localhost"), &listed));
    }
}
