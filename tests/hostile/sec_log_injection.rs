//! Issue 24, finding 8: text a client controls (`stream_id` of a join or a notify, a notify's
//! `filepath`) is logged escaped, so a newline in it cannot start a forged log line.

use std::time::Duration;

use crate::security::{lines_starting_with, reported};
use crate::support::sio::SioClient;
use crate::support::{audio_bytes, wait_until, Server, Watchdog, WAIT};

/// What each injected value tries to put at the start of a log line.
const FORGED: &str = "FORGED asf log line";

#[test]
fn newlines_in_stream_ids_and_filepaths_do_not_forge_log_lines() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "log injection");
        let server = Server::start_with(&[("ASF_LOG", "debug")]);
        let injected_id = format!("strm_x\n{FORGED}");
        // A registered id with a newline: notify it, then join it and stream it to the end.
        let path = server.write_audio("inj.mp3", &audio_bytes(10_000, 108));
        let (status, body) = server.notify(&injected_id, &path);
        eprintln!("notify of an id with a newline: {status} {body}");
        // A not-yet-existing file whose path has a newline.
        let (status, body) = server.notify("strm_path", format!("new\n{FORGED}.mp3"));
        eprintln!("notify of a filepath with a newline: {status} {body}");
        let mut client = SioClient::connect(server.addr);
        client.join(&injected_id);
        let r = client.collect_stream();
        eprintln!("join of the notified id: {:?}", r.control_names());
        // An unknown id with a newline (the server logs the wait for it).
        client.join(&format!("unknown\n{FORGED}"));
        let event = client.next_event().expect("an answer to the unknown join");
        eprintln!("join of an unknown id: {event:?}");
        client.close();

        // Wait until the log shows the three values (escaped or not): checking it before they
        // arrive from the server's stderr would pass whatever the server writes.
        wait_until(WAIT, "the injected values in the log", || {
            server.log().matches(FORGED).count() >= 3
        });
        let forged = lines_starting_with(&server, "FORGED");
        assert!(
            forged.is_empty(),
            "client text started {} log lines: {forged:?}",
            forged.len()
        );
    })
}
