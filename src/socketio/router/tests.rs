//! Two namespaces served by one router, and a room broadcast reaching exactly the room.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::test_client::Client;
use super::*;

/// A test namespace: `join` puts the socket in the room named by its argument, `leave`
/// takes it out, and connecting says which namespace answered.
#[derive(Debug, Default)]
struct Roomy;

impl Handler for Roomy {
    type Data = u32;

    fn on_connect(&self, socket: &mut Socket<'_, u32>, _auth: Option<&Value>) {
        let ns = socket.ns().to_owned();
        socket.emit("hello", &[json!(ns)]);
    }

    fn on_event(&self, socket: &mut Socket<'_, u32>, event: Event) {
        *socket.data += 1;
        let room = event.args[0].as_str().unwrap_or_default().to_owned();
        match event.name.as_str() {
            "join" => socket.join(&room).expect("join"),
            "leave" => socket.leave(&room),
            _ => {}
        }
    }

    fn on_disconnect(&self, _socket: &mut Socket<'_, u32>, _reason: &DisconnectReason) {}
}

fn router() -> Router {
    Router::new("/socket.io/", Limits::default())
        .namespace("/a", Arc::new(Roomy))
        .namespace("/b", Arc::new(Roomy))
}

#[test]
fn two_namespaces_each_with_its_own_handler_state_and_an_unknown_one_refused() {
    let r = router();
    let mut c = Client::new(&r);
    c.send(&r, "0/a,");
    c.send(&r, "0/b,");
    c.send(&r, "0/nope,");
    let t = c.texts();
    assert!(t[0].starts_with("40/a,{\"sid\":"));
    assert_eq!(t[1], r#"42/a,["hello","/a"]"#);
    assert!(t[2].starts_with("40/b,{\"sid\":"));
    assert_eq!(t[3], r#"42/b,["hello","/b"]"#);
    assert_eq!(t[4], r#"44/nope,{"message":"Invalid namespace"}"#);
    assert_eq!(r.close_packets(&c.conn).len(), 2);
}

#[test]
fn a_room_broadcast_reaches_exactly_the_rooms_members() {
    let r = router();
    let mut members: Vec<Client> = (0..2).map(|_| Client::new(&r)).collect();
    let mut other_room = Client::new(&r);
    let mut other_ns = Client::new(&r);
    let mut left = Client::new(&r);
    for c in members.iter_mut() {
        c.send(&r, "0/a,");
        c.send(&r, r#"2/a,["join","r1"]"#);
    }
    other_room.send(&r, "0/a,");
    other_room.send(&r, r#"2/a,["join","r2"]"#);
    other_ns.send(&r, "0/b,");
    other_ns.send(&r, r#"2/b,["join","r1"]"#);
    left.send(&r, "0/a,");
    left.send(&r, r#"2/a,["join","r1"]"#);
    left.send(&r, r#"2/a,["leave","r1"]"#);
    let mut all: Vec<&mut Client> = members.iter_mut().collect();
    all.extend([&mut other_room, &mut other_ns, &mut left]);
    for c in all.iter_mut() {
        c.texts();
    }

    assert_eq!(r.room_len("/a", "r1"), 2);
    let reached = r.emit_to_room("/a", "r1", "news", &[json!({"n": 1})]);
    assert_eq!(reached, 2);
    for c in all.iter_mut() {
        c.wake(&r);
    }
    for c in members.iter_mut() {
        assert_eq!(c.wakes.get(), 1, "a member is woken once");
        assert_eq!(c.texts(), [r#"42/a,["news",{"n":1}]"#]);
    }
    for c in [&mut other_room, &mut other_ns, &mut left] {
        assert_eq!(c.wakes.get(), 0);
        assert!(c.texts().is_empty());
    }

    // Leaving the namespace (and closing) takes a socket out of its rooms.
    members[0].send(&r, "1/a,");
    assert_eq!(r.room_len("/a", "r1"), 1);
    let m = &mut members[1];
    let cx = Cx {
        sid: m.sid,
        now: Instant::now(),
        waker: &m.waker,
        out: &mut m.out,
    };
    r.on_close(&mut m.conn, cx, &DisconnectReason::TransportClose);
    assert_eq!(r.room_len("/a", "r1"), 0);
    assert_eq!(r.emit_to_room("/a", "r1", "news", &[]), 0);
}

#[test]
fn connects_count_against_the_packet_rate() {
    let r = Router::new(
        "/socket.io/",
        Limits {
            max_events_per_sec: 10,
            ..Limits::default()
        },
    );
    let mut c = Client::new(&r);
    let now = Instant::now();
    let mut refused = 0;
    let mut closed = None;
    for _ in 0..100 {
        let cx = Cx {
            sid: c.sid,
            now,
            waker: &c.waker,
            out: &mut c.out,
        };
        match r.on_message(
            &mut c.conn,
            cx,
            Message::Text(Bytes::from_static(b"0/bad,")),
        ) {
            Ok(()) => refused += 1,
            Err(e) => {
                closed = Some(e);
                break;
            }
        }
    }
    assert_eq!(
        refused, 20,
        "a burst of twice the rate, then the session closes"
    );
    assert_eq!(closed, Some(DisconnectReason::RateLimited));
}

/// Whether `r` ended the session for a packet on a namespace in the wrong state.
fn invalid_state(r: Result<(), DisconnectReason>, what: &str) {
    match r {
        Err(DisconnectReason::ProtocolError(why)) => assert!(
            why.contains("which the client has"),
            "{what}: unexpected reason {why:?}"
        ),
        other => panic!("{what}: the session should end, got {other:?}"),
    }
}

#[test]
fn packets_for_a_namespace_not_joined_and_a_second_connect_end_the_session() {
    let r = router();
    // Every kind a client sends, for a hosted namespace it has not joined (or left).
    for packet in [
        r#"2/a,["join","r1"]"#,
        r#"2/a,1["join","r1"]"#,
        r#"51-/a,["x",{"_placeholder":true,"num":0}]"#,
        r#"3/a,1[]"#,
        r#"61-/a,1[{"_placeholder":true,"num":0}]"#,
        "1/a,",
        r#"2["x"]"#,
        "1",
    ] {
        let mut c = Client::new(&r);
        c.send(&r, "0/b,");
        let r1 = c.try_send(&r, packet);
        let r1 = if packet.starts_with('5') || packet.starts_with('6') {
            assert_eq!(r1, Ok(()), "{packet}: waits for its attachment");
            c.deliver(&r, Message::Binary(Bytes::from_static(b"bin")))
        } else {
            r1
        };
        invalid_state(r1, packet);
    }
    // Left, then used again.
    let mut c = Client::new(&r);
    c.send(&r, "0/a,");
    c.send(&r, "1/a,");
    invalid_state(
        c.try_send(&r, r#"2/a,["join","r1"]"#),
        "event after leaving",
    );
    // A second CONNECT to a namespace joined, with or without a payload.
    for again in ["0/a,", r#"0/a,{"token":"x"}"#] {
        let mut c = Client::new(&r);
        c.send(&r, "0/a,");
        let before = r.socket_counts().get();
        invalid_state(c.try_send(&r, again), again);
        assert_eq!(
            r.socket_counts().get(),
            before,
            "no second socket for {again}"
        );
    }
    // What stays allowed: an ack on a joined namespace is ignored, and joining again after
    // leaving, or a CONNECT to an unknown namespace, is answered.
    let mut c = Client::new(&r);
    c.send(&r, "0/a,");
    c.send(&r, "3/a,1[]");
    c.send(&r, "1/a,");
    c.send(&r, "0/a,");
    c.send(&r, "0/nope,");
    let t = c.texts();
    assert!(t[2].starts_with("40/a,{\"sid\":"), "{t:?}");
    assert_eq!(
        t.last().unwrap(),
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
}
