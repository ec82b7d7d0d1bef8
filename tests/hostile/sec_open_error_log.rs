//! Re-audit, finding A: a stored path with a newline must not forge log lines when an
//! unauthenticated listener's join fails to open it. The join's failure is logged with the open
//! error, whose text names the stored path; that text was written raw (`%e`), so a newline in a
//! notified `filepath` (a file that did not exist yet) started a line of its own at every join.

use std::time::Duration;

use crate::security::{lines_starting_with, reported};
use crate::support::sio::SioClient;
use crate::support::{wait_until, Server, Watchdog, WAIT};

const FORGED: &str = "FORGED open error line";

#[test]
fn open_errors_of_paths_with_newlines_do_not_forge_log_lines() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "open error log injection");
        let server = Server::start();
        // Accepted: the file does not exist yet; the join then fails to open it.
        let (status, body) = server.notify("strm_nl", format!("later\n{FORGED}.mp3"));
        assert_eq!(status, 200, "notify of a missing file: {body}");
        let mut client = SioClient::connect(server.addr);
        client.join("strm_nl");
        let event = client.next_event().expect("an answer to the join");
        assert!(
            format!("{event:?}").contains("stream_error"),
            "join of a missing file: {event:?}"
        );
        client.close();

        // The line is written when the join is answered; wait for it to reach the log.
        wait_until(WAIT, "the failed open in the log", || {
            server.log().contains(FORGED)
        });
        let forged = lines_starting_with(&server, "FORGED");
        assert!(
            forged.is_empty(),
            "a stored path started {} log lines: {forged:?}",
            forged.len()
        );
    })
}
