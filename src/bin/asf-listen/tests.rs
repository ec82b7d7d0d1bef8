use super::*;
use crate::args::*;
use crate::protocol::*;
use serde_json::Value;

fn args(list: &[&str]) -> Result<Command, String> {
    parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn target(host: &str, port: u16) -> Target {
    Target {
        host: host.into(),
        port,
    }
}

#[test]
fn parses_urls() {
    assert_eq!(
        parse_url("http://127.0.0.1:5006"),
        Ok(target("127.0.0.1", 5006))
    );
    assert_eq!(parse_url("ws://localhost:1/"), Ok(target("localhost", 1)));
    assert_eq!(parse_url("http://h"), Ok(target("h", 80)));
    assert_eq!(parse_url("http://[::1]:9"), Ok(target("::1", 9)));
    assert_eq!(
        parse_url("http://h:2/api/v1/podcasts/stream"),
        Ok(target("h", 2))
    );
}

#[test]
fn rejects_bad_urls() {
    for bad in [
        "",
        "h:1",
        "https://h:1",
        "wss://h",
        "http://",
        "http://:5",
        "http://h:0",
        "http://h:70000",
        "http://h:x",
        "http://h:1/other",
        "http://[::1",
        "http://[::1]x",
    ] {
        assert!(parse_url(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn parses_command_lines() {
    assert_eq!(
        args(&[
            "--url",
            "http://h:1",
            "--stream",
            "s",
            "--offset",
            "7",
            "--out",
            "f"
        ]),
        Ok(Command::Listen(Args {
            target: target("h", 1),
            stream: "s".into(),
            offset: Some(7),
            out: Out::File("f".into()),
        }))
    );
    assert_eq!(
        args(&["--url=http://h:1", "--stream=s", "--out", "-"]),
        Ok(Command::Listen(Args {
            target: target("h", 1),
            stream: "s".into(),
            offset: None,
            out: Out::Stdout,
        }))
    );
    assert_eq!(args(&["--help"]), Ok(Command::Help));
    assert_eq!(args(&["--version"]), Ok(Command::Version));
    assert_eq!(args(&["-V"]), Ok(Command::Version));
}

#[test]
fn rejects_bad_command_lines() {
    for bad in [
        &[][..],
        &["--stream", "s"],
        &["--url", "http://h:1"],
        &["--url", "http://h:1", "--stream"],
        &["--url", "http://h:1", "--stream", ""],
        &["--url", "http://h:1", "--stream", "s", "--offset", "-1"],
        &["--url", "http://h:1", "--stream", "s", "--offset", "x"],
        &["--url", "http://h:1", "--stream", "s", "--stream", "t"],
        &["--url", "http://h:1", "--stream", "s", "--bogus"],
        &["--url", "http://h:1", "--stream", "s", "--out", ""],
    ] {
        assert!(args(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn parses_engine_and_socketio_messages() {
    assert_eq!(parse_engine("0{\"sid\":\"x\"}"), Ok(EngineMsg::Open));
    assert_eq!(parse_engine("2"), Ok(EngineMsg::Ping(String::new())));
    assert_eq!(parse_engine("2probe"), Ok(EngineMsg::Ping("probe".into())));
    assert_eq!(parse_engine("6"), Ok(EngineMsg::Noop));
    assert_eq!(parse_engine("1"), Ok(EngineMsg::Close));
    let chunk = format!("451-{NAMESPACE},[\"audio_chunk\",{{\"_placeholder\":true,\"num\":0}}]");
    match parse_engine(&chunk) {
        Ok(EngineMsg::Packet(p)) => {
            assert_eq!((p.kind, p.attachments, p.nsp.as_str()), (5, 1, NAMESPACE));
            assert_eq!(event_of(&p.data).map(|e| e.0), Ok("audio_chunk".into()));
        }
        other => panic!("{other:?}"),
    }
    let event = format!("42{NAMESPACE},[\"stream_error\",{{\"message\":\"m\"}}]");
    match parse_engine(&event) {
        Ok(EngineMsg::Packet(p)) => {
            assert_eq!(
                event_of(&p.data),
                Ok(("stream_error".into(), json!({"message": "m"})))
            );
        }
        other => panic!("{other:?}"),
    }
    match parse_engine(&format!("41{NAMESPACE},")) {
        Ok(EngineMsg::Packet(p)) => assert_eq!((p.kind, p.data), (1, Value::Null)),
        other => panic!("{other:?}"),
    }
    match parse_engine("4212[\"x\"]") {
        Ok(EngineMsg::Packet(p)) => assert_eq!((p.kind, p.nsp.as_str()), (2, "/")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_malformed_messages() {
    for bad in ["", "4", "49", "45/x,[]", "45a-[]", "4599999-[]", "42[\"x\""] {
        assert!(parse_engine(bad).is_err(), "{bad:?} should not parse");
    }
    for bad in [json!({}), json!([]), json!([1, 2]), json!("x")] {
        assert!(event_of(&bad).is_err(), "{bad} is not an event");
    }
}

#[test]
fn clips_long_text() {
    assert_eq!(clip("ab"), "\"ab\"");
    assert!(clip(&"é".repeat(500)).chars().count() < 210);
}

#[test]
fn says_when_a_stream_is_live() {
    use serde_json::json;
    let live =
        json!({"event": "start_of_stream", "stream_id": "s", "total_bytes": null, "live": true});
    assert_eq!(
        session::live_note("audio_control", &live).as_deref(),
        Some("stream s is live: its file is still being written; receiving it as it grows")
    );
    let done = json!({"event": "start_of_stream", "stream_id": "s", "total_bytes": 3});
    assert_eq!(session::live_note("audio_control", &done), None);
    assert_eq!(session::live_note("stream_status", &live), None);
}
