//! Fuzz target: what the app reads from clients and publishers besides the protocol
//! framing: the notify body (`asf::app::parse_notify`), `join_stream`'s arguments as the
//! Socket.IO decoder hands them over (`asf::app::parse_join`), and the Host guard of the
//! tokenless internal endpoints (`asf::app::host_may_reach_internal`).
//!
//! Byte 0 picks the input (`b % 3`), the rest is it:
//! - 0, a notify body: an accepted one has a stream id of 1..=`MAX_STREAM_ID_LEN` bytes and a
//!   file path of 1..=`MAX_FILEPATH_LEN`, and reads the same once re-encoded; its stream id
//!   can be joined (a `join_stream` event carrying it, encoded and decoded as Socket.IO does,
//!   joins exactly that id) and named in `/asf/internal/streams/<id>` (percent-encoded as a
//!   client would, the path segment decodes to it).
//! - 1, a Socket.IO text packet (the Engine.IO message without its `4`): a `join_stream`
//!   event that `parse_join` accepts has a stream id of 1..=`MAX_STREAM_ID_LEN` bytes, reads
//!   the same once re-encoded, and its id is one a notify accepts.
//! - 2, a Host header, then `\n`-separated `ASF_INTERNAL_HOSTS` names: a Host that passes
//!   with no names listed is an IP literal (IPv6 in brackets) or `localhost`, with an
//!   optional port, and passes with any list; one that passes only with the list names one
//!   of its names.
//!
//! Must not test anything else.

#![no_main]

mod segment;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use asf::app::{host_may_reach_internal, parse_join, parse_notify, JoinRequest, Notify};
use asf::app::{MAX_STREAM_ID_LEN, NAMESPACE};
use asf::http::decode_path_segment;
use asf::socketio::packet::{event, Decoder, Incoming};
use asf::stream::MAX_FILEPATH_LEN;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use segment::percent_encode;
use serde_json::{json, Value};

/// The arguments of a `join_stream` event in Socket.IO text packet `text`, if it is one.
fn join_args(text: Bytes) -> Option<Vec<Value>> {
    match Decoder::default().decode_text(text, Instant::now()) {
        Ok(Some(Incoming::Event { event, args, .. })) if event == "join_stream" => Some(args),
        _ => None,
    }
}

/// `req` as a client sends it: a `join_stream` event on the audio namespace, decoded back.
fn join_over_socketio(req: &JoinRequest) -> Result<JoinRequest, String> {
    let payload = json!({ "stream_id": req.stream_id, "offset": req.offset });
    let packet = event(NAMESPACE, "join_stream", &[payload]);
    // Without the Engine.IO message type `4`.
    let args = join_args(packet.slice(1..)).expect("our own join_stream event decodes");
    parse_join(&args)
}

fn check_notify(body: &[u8]) {
    let Ok(notify) = parse_notify(body) else {
        return;
    };
    assert!((1..=MAX_STREAM_ID_LEN).contains(&notify.stream_id.len()));
    assert!((1..=MAX_FILEPATH_LEN).contains(&notify.filepath.len()));
    let again = json!({
        "stream_id": notify.stream_id,
        "filepath": notify.filepath,
        "live": notify.live,
    });
    assert_eq!(
        parse_notify(again.to_string().as_bytes()).as_ref(),
        Ok(&notify),
        "a notify body reads the same once re-encoded"
    );
    let join = JoinRequest {
        stream_id: notify.stream_id.clone(),
        offset: 0,
    };
    assert_eq!(
        join_over_socketio(&join),
        Ok(join),
        "a notified id can be joined"
    );
    assert_eq!(
        decode_path_segment(&percent_encode(&notify.stream_id)),
        notify.stream_id,
        "a notified id can be named in /asf/internal/streams/<id>"
    );
}

fn check_join(text: &[u8]) {
    let Some(args) = join_args(Bytes::copy_from_slice(text)) else {
        return;
    };
    let Ok(req) = parse_join(&args) else {
        return;
    };
    assert!((1..=MAX_STREAM_ID_LEN).contains(&req.stream_id.len()));
    assert_eq!(
        join_over_socketio(&req).as_ref(),
        Ok(&req),
        "a join reads the same once re-encoded"
    );
    let body = json!({ "stream_id": req.stream_id, "filepath": "a.mp3" });
    assert_eq!(
        parse_notify(body.to_string().as_bytes()).map(|n: Notify| n.stream_id),
        Ok(req.stream_id),
        "a joinable id can be notified"
    );
}

/// The name part of a Host header (no port, no IPv6 brackets), or `None` for an unclosed `[`.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(inside, _)| inside),
        None => Some(host.split(':').next().unwrap_or(host)),
    }
}

fn check_host(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or_default();
    let listed: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
    let alone = host_may_reach_internal(Some(host), &[]);
    let with_list = host_may_reach_internal(Some(host), &listed);
    if alone {
        assert!(with_list, "listing names refuses nothing");
        let name = host_name(host).expect("a passing Host is well formed");
        assert!(
            name.parse::<Ipv4Addr>().is_ok()
                || (host.trim().starts_with('[') && name.parse::<Ipv6Addr>().is_ok())
                || name.eq_ignore_ascii_case("localhost"),
            "{host:?} passed without a name listed"
        );
    } else if with_list {
        let name = host_name(host).expect("a passing Host is well formed");
        assert!(
            listed.iter().any(|l| name.eq_ignore_ascii_case(l)),
            "{host:?} passed, but names none of {listed:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => check_notify(input),
        1 => check_join(input),
        _ => check_host(input),
    }
});
