//! Several asf nodes as one service (`ASF_REDIS_URL`): two real `asf` processes share one real
//! `redis-server` (started here on a free loopback port, no persistence) and one audio root, as
//! nodes behind a load balancer share one volume. A notify on either node reaches listeners on
//! both, waiting listeners on the other node are woken, deletes propagate; a node killed with
//! SIGKILL leaves the other untouched and its listeners resume there with `offset`; a Redis
//! restart turns notifies into 503s until both nodes have resynced on their own.
//!
//! `redis-server` must be installed (`apt-get install redis-server`; `scripts/test` does it as
//! root); without it the tests fail saying so. No test asserts a speed; watchdogs catch hangs.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::redis_server::{Nginx, RedisServer};
use support::sio::{assert_whole, listen_once, SioClient, StreamResult};
use support::{
    assert_listen_run, audio_bytes, get, listen_url, parse_json, post_json, wait_until,
    ChildServer, Client, Watchdog, WAIT,
};

const NOT_FOUND: &str = "Audio stream ID not found or not yet processed.";
const LIMIT: Duration = Duration::from_secs(300);

/// Two asf nodes on one Redis and one audio root (node A's).
struct Cluster {
    a: ChildServer,
    b: ChildServer,
}

/// Starts a node on `redis` with the audio root `root` (None: its own).
fn node(redis: &RedisServer, root: Option<&Path>, extra: &[(&str, &str)]) -> ChildServer {
    let url = redis.url();
    let root = root.map(|r| r.to_string_lossy().into_owned());
    let mut env = vec![("ASF_REDIS_URL", url.as_str()), ("ASF_REDIS_PREFIX", "t1:")];
    if let Some(root) = &root {
        env.push(("ASF_AUDIO_ROOT", root.as_str()));
    }
    env.extend_from_slice(extra);
    ChildServer::start(&env, None)
}

impl Cluster {
    fn start(redis: &RedisServer, extra: &[(&str, &str)]) -> Cluster {
        let a = node(redis, None, extra);
        let root = a.root.path().canonicalize().expect("root");
        let b = node(redis, Some(&root), extra);
        let cluster = Cluster { a, b };
        for addr in [cluster.a.addr, cluster.b.addr] {
            wait_until(WAIT, "the node to connect to redis", || {
                health(addr)["registry_connected"] == true
            });
        }
        cluster
    }

    fn root(&self) -> PathBuf {
        self.a.root.path().canonicalize().expect("root")
    }

    /// Writes `bytes` as `name` in the shared audio root.
    fn audio(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root().join(name);
        std::fs::write(&path, bytes).expect("write audio");
        path
    }
}

fn health(addr: SocketAddr) -> Value {
    let (status, _, body) = get(addr, "/asf/health");
    assert_eq!(status, 200);
    parse_json(&body)
}

fn notify(addr: SocketAddr, id: &str, path: &Path) -> (u16, Value) {
    let body = json!({ "stream_id": id, "filepath": path.to_string_lossy() });
    let (status, _, body) = post_json(addr, "/asf/internal/notify_new_audio", &body);
    (status, parse_json(&body))
}

fn notify_ok(addr: SocketAddr, id: &str, path: &Path) {
    let (status, body) = notify(addr, id, path);
    assert_eq!(status, 200, "notify {id} on {addr}: {body}");
}

fn delete(addr: SocketAddr, id: &str) -> u16 {
    let raw = format!(
        "DELETE /asf/internal/streams/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    support::http_request(addr, raw.as_bytes()).0
}

/// `GET /asf/internal/streams/<id>` on `addr`: the status and the JSON body (404: unknown).
fn show_stream(addr: SocketAddr, id: &str) -> (u16, Value) {
    let (status, _, body) = get(addr, &format!("/asf/internal/streams/{id}"));
    (status, parse_json(&body))
}

/// Connects `n` clients to `addr`, joins them all to `id` at once (from `offset`) and
/// collects their streams.
fn listeners(addr: SocketAddr, id: &str, n: usize) -> Vec<StreamResult> {
    let clients: Vec<SioClient> = (0..n).map(|_| SioClient::connect(addr)).collect();
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (barrier, id) = (Arc::clone(&barrier), id.to_owned());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    client.join(&id);
                    let r = client.collect_stream();
                    client.close();
                    r
                })
                .expect("listener thread")
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("listener"))
        .collect()
}

fn assert_not_found(r: &StreamResult, what: &str) {
    let err = r
        .first("stream_error")
        .unwrap_or_else(|| panic!("{what}: {:?}", r.events));
    assert_eq!(err["message"], NOT_FOUND, "{what}");
}

#[test]
fn a_notify_on_one_node_reaches_listeners_and_waiters_on_both() {
    let _dog = Watchdog::new(LIMIT, "two nodes on redis");
    let redis = RedisServer::start();
    let c = Cluster::start(&redis, &[]);
    let (a, b) = (c.a.addr, c.b.addr);
    let data = audio_bytes(1 << 20, 19);
    let path = c.audio("shared.mp3", &data);

    // A listener waits on B for an id nobody has notified yet: told "not found", it
    // watches the id; the notify lands on A.
    let mut waiter = SioClient::connect(b);
    waiter.join("strm_later");
    assert_not_found(&waiter.collect_stream(), "the waiter's first answer");

    notify_ok(a, "strm_shared", &path);
    notify_ok(a, "strm_later", &path);
    assert_whole(
        &waiter.collect_stream(),
        &data,
        "the waiter on B, woken by the notify on A",
    );
    waiter.close();

    let on_b = thread::spawn(move || listeners(b, "strm_shared", 200));
    let on_a = listeners(a, "strm_shared", 200);
    for (i, r) in on_a.iter().enumerate() {
        assert_whole(r, &data, &format!("listener {i} on A"));
    }
    for (i, r) in on_b.join().expect("B listeners").iter().enumerate() {
        assert_whole(r, &data, &format!("listener {i} on B"));
    }

    // A re-notify on B (another file under the same id) is what A serves next, once A has
    // applied B's change (it arrives on Redis's events channel: no cross-node
    // read-your-writes is promised).
    let other = audio_bytes(300_000, 23);
    let other_path = c.audio("other.mp3", &other);
    notify_ok(b, "strm_shared", &other_path);
    let other_shown = other_path.to_string_lossy().into_owned();
    wait_until(WAIT, "A to apply B's re-notify", || {
        let (status, shown) = show_stream(a, "strm_shared");
        status == 200 && shown["path"] == other_shown.as_str()
    });
    assert_whole(
        &listen_once(a, "strm_shared"),
        &other,
        "A after B's re-notify",
    );

    // A delete on B is seen on A (once applied there).
    assert_eq!(delete(b, "strm_shared"), 200);
    wait_until(WAIT, "A to apply B's delete", || {
        let (status, shown) = show_stream(a, "strm_shared");
        status == 404 || (status == 200 && shown["registered"] == false)
    });
    assert_not_found(&listen_once(a, "strm_shared"), "A after B's delete");
    assert_eq!(health(a)["registered_streams"], 1, "{}", health(a));
    assert_eq!(health(b)["registered_streams"], 1, "{}", health(b));
}

#[test]
fn a_redis_restart_answers_503_during_the_outage_then_both_nodes_resync() {
    let _dog = Watchdog::new(LIMIT, "redis restart");
    let mut redis = RedisServer::start();
    // Paced (100 chunks, about 1 s), so a stream is in progress while Redis goes away.
    let c = Cluster::start(&redis, &[("ASF_STREAM_SLEEP_INTERVAL", "0.01")]);
    let (a, b) = (c.a.addr, c.b.addr);
    let data = audio_bytes(400_000, 29);
    let path = c.audio("before.mp3", &data);
    notify_ok(a, "strm_before", &path);
    let mut streaming = SioClient::connect(b);
    streaming.join("strm_before");
    let mut head = StreamResult::default();
    streaming.read_until_audio(&mut head, 40_000);

    redis.kill();
    for addr in [a, b] {
        wait_until(WAIT, "the node to see Redis gone", || {
            health(addr)["registry_connected"] == false
        });
        assert_eq!(health(addr)["registry"], "redis");
    }
    // No write, no 200.
    let (status, body) = notify(a, "strm_during", &path);
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"],
        "The stream registry is unavailable: the change was not stored; retry later"
    );
    assert_eq!(delete(b, "strm_before"), 503);
    // The stream in progress goes on; a join of an id B knows still works.
    let rest = streaming.collect_stream();
    streaming.close();
    assert_whole(&head.merge(rest), &data, "the stream across the outage");
    assert_whole(
        &listen_once(b, "strm_before"),
        &data,
        "a join on B during the outage",
    );

    redis.restart();
    for addr in [a, b] {
        wait_until(WAIT, "the node to reconnect", || {
            health(addr)["registry_connected"] == true
        });
        // Resynced with the restarted (empty) Redis, without a restart of asf.
        assert_eq!(health(addr)["registered_streams"], 0, "{}", health(addr));
    }
    let mut waiter = SioClient::connect(b);
    waiter.join("strm_after");
    assert_not_found(&waiter.collect_stream(), "B before the notify");
    let after = audio_bytes(100_000, 31);
    let after_path = c.audio("after.mp3", &after);
    notify_ok(a, "strm_after", &after_path);
    assert_whole(&waiter.collect_stream(), &after, "B after the notify on A");
    waiter.close();

    // One line per change of state, not one per reconnection attempt.
    for (name, log) in [("A", c.a.log()), ("B", c.b.log())] {
        assert_eq!(
            log.matches("redis connection lost").count(),
            1,
            "{name}:\n{log}"
        );
        assert_eq!(log.matches("redis connected").count(), 2, "{name}:\n{log}");
        assert!(!log.contains("cannot reach redis"), "{name}:\n{log}");
    }
}

/// A listener on the connected `client` that meets `start` (every client is connected), joins
/// `id`, receives at least `head` bytes, then meets `ready` (all listeners are mid-stream),
/// then reads on until the stream ends or its node dies.
fn mid_stream_listener(
    mut client: SioClient,
    id: &str,
    head: usize,
    start: Arc<Barrier>,
    ready: Arc<Barrier>,
) -> thread::JoinHandle<(StreamResult, bool)> {
    let id = id.to_owned();
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            start.wait();
            client.join(&id);
            let mut acc = StreamResult::default();
            client.read_until_audio(&mut acc, head);
            ready.wait();
            // Until end_of_stream (true), or until the connection breaks (false).
            loop {
                match client.next_event() {
                    Ok(event) => {
                        if acc.push(event) {
                            return (acc, true);
                        }
                    }
                    Err(_) => return (acc, false),
                }
            }
        })
        .expect("listener thread")
}

#[test]
fn a_node_killed_mid_stream_leaves_the_other_untouched_and_its_listeners_resume_there() {
    let _dog = Watchdog::new(LIMIT, "SIGKILL of a node");
    let redis = RedisServer::start();
    // Paced: 100 chunks, about 1 s, so the kill lands mid-stream.
    let mut c = Cluster::start(&redis, &[("ASF_STREAM_SLEEP_INTERVAL", "0.01")]);
    let (a, b) = (c.a.addr, c.b.addr);
    let data = audio_bytes(400_000, 37);
    let path = c.audio("kill.mp3", &data);
    notify_ok(a, "strm_kill", &path);
    const N: usize = 100;
    // Every client connects first; only then do all join at once, so the one-second streams
    // run side by side and the kill below finds those on A mid-stream (joined one by one as
    // they connected, the first could finish before the last had connected).
    let clients_a: Vec<SioClient> = (0..N).map(|_| SioClient::connect(a)).collect();
    let clients_b: Vec<SioClient> = (0..N).map(|_| SioClient::connect(b)).collect();
    let start = Arc::new(Barrier::new(2 * N));
    let ready = Arc::new(Barrier::new(2 * N + 1));
    let spawn_all = |clients: Vec<SioClient>| -> Vec<_> {
        clients
            .into_iter()
            .map(|client| {
                let (start, ready) = (Arc::clone(&start), Arc::clone(&ready));
                mid_stream_listener(client, "strm_kill", 20_000, start, ready)
            })
            .collect()
    };
    let on_a = spawn_all(clients_a);
    let on_b = spawn_all(clients_b);
    ready.wait();
    c.a.signal(libc::SIGKILL);
    c.a.wait_exit(WAIT);

    for (i, h) in on_b.into_iter().enumerate() {
        let (r, ended) = h.join().expect("B listener");
        assert!(ended, "listener {i} on B lost its connection");
        assert_whole(&r, &data, &format!("listener {i} on B"));
    }
    // As clients behind a load balancer do: reconnect (to B) and join with `offset`, all at
    // once.
    let resumes: Vec<_> = on_a
        .into_iter()
        .map(|h| {
            let (head, ended) = h.join().expect("A listener");
            thread::spawn(move || {
                if ended {
                    return (head, None);
                }
                let mut client = SioClient::connect(b);
                client.emit(
                    "join_stream",
                    json!({ "stream_id": "strm_kill", "offset": head.audio.len() }),
                );
                let rest = client.collect_stream();
                client.close();
                (head, Some(rest))
            })
        })
        .collect();
    let mut resumed = 0;
    for (i, h) in resumes.into_iter().enumerate() {
        let what = format!("listener {i} of A");
        match h.join().expect("resume") {
            (head, None) => assert_whole(&head, &data, &format!("{what}, done before the kill")),
            (head, Some(rest)) => {
                let start = rest.first("audio_control").cloned().unwrap_or_default();
                assert_eq!(start["offset"], head.audio.len(), "{what}: {start}");
                assert_eq!(rest.last_event_kind(), Some("end_of_stream"), "{what}");
                let mut whole = head.audio.clone();
                whole.extend_from_slice(&rest.audio);
                support::assert_audio(&whole, &data, &format!("{what}, resumed on B"));
                resumed += 1;
            }
        }
    }
    assert!(resumed > 0, "no listener of A was cut by the kill");
}

#[test]
fn through_nginx_in_front_of_two_nodes_every_client_and_transport_streams_byte_exact() {
    let _dog = Watchdog::new(LIMIT, "nginx in front of two nodes");
    let redis = RedisServer::start();
    let c = Cluster::start(&redis, &[]);
    let nginx = Nginx::start(&[c.a.addr, c.b.addr]);
    let data = audio_bytes(1 << 20, 41);
    let path = c.audio("lb.mp3", &data);
    // CPOA's notify through the balancer, to whichever node it picks.
    notify_ok(nginx.addr, "strm_lb", &path);
    let url = nginx.url();
    for (client, transports) in [
        (Client::Node, "default"),
        (Client::Python, "default"),
        (Client::Node, "polling"),
        (Client::Python, "polling"),
        (Client::Node, "websocket"),
    ] {
        let run = listen_url(client, &url, "strm_lb", transports, None);
        let what = format!("{client:?} with transports {transports} through nginx");
        assert_listen_run(&run, &data, &what);
    }
    // A client that closes its upgraded connection while a frame is on its way (python's
    // disconnect() after end_of_stream) makes nginx log a broken pipe or reset towards that
    // client: the client's hang-up, not a fault of ASF or of the configuration.
    let log = nginx.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[error]"))
        .filter(|l| {
            !(l.contains("while proxying upgraded connection")
                && (l.contains("(32: Broken pipe)")
                    || l.contains("(104: Connection reset by peer)")))
        })
        .collect();
    assert!(errors.is_empty(), "nginx logged errors:\n{log}");
}

#[test]
fn a_completing_notify_on_one_node_ends_the_live_streams_of_the_other() {
    let _dog = Watchdog::new(LIMIT, "live completion across nodes");
    let redis = RedisServer::start();
    // Far longer than the test's waits: only the completing notify can end the stream.
    let c = Cluster::start(&redis, &[("ASF_LIVE_IDLE_TIMEOUT", "120")]);
    let (a, b) = (c.a.addr, c.b.addr);
    let data = audio_bytes(300_000, 43);
    let path = c.audio("live.mp3", &data[..100_000]);
    let body =
        json!({ "stream_id": "strm_live", "filepath": path.to_string_lossy(), "live": true });
    let (status, _, resp) = post_json(a, "/asf/internal/notify_new_audio", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));

    let mut listener = SioClient::connect(b);
    listener.join("strm_live");
    let mut head = StreamResult::default();
    listener.read_until_audio(&mut head, 100_000);
    let start = head.first("audio_control").cloned().unwrap_or_default();
    assert_eq!(start["live"], true, "{start}");

    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open live file");
    std::io::Write::write_all(&mut file, &data[100_000..]).expect("append");
    drop(file);
    notify_ok(a, "strm_live", &path);
    let rest = listener.collect_stream();
    listener.close();
    let r = head.merge(rest);
    assert_eq!(
        r.last_event_kind(),
        Some("end_of_stream"),
        "{:?}",
        r.events.last()
    );
    support::assert_audio(&r.audio, &data, "the live stream on B, completed on A");
}

#[test]
fn a_ui_update_sent_to_one_node_reaches_the_room_members_on_both() {
    let _dog = Watchdog::new(LIMIT, "UI updates across nodes");
    let redis = RedisServer::start();
    let c = Cluster::start(&redis, &[]);
    let mut members = Vec::new();
    for addr in [c.a.addr, c.b.addr] {
        let mut m = SioClient::connect(addr);
        assert_eq!(m.connect_ns("/ui_updates").expect("connect").kind, 0);
        let ack = m.next_event_on("/ui_updates").expect("ui_connection_ack");
        assert_eq!(ack.name, "ui_connection_ack");
        m.emit_on(
            "/ui_updates",
            "subscribe_to_ui_updates",
            json!({"client_id": "user-7"}),
        );
        let done = m.next_event_on("/ui_updates").expect("subscribed");
        assert_eq!(done.name, "subscribed_ui_updates", "{:?}", done);
        members.push(m);
    }
    for (i, from) in [c.a.addr, c.b.addr].into_iter().enumerate() {
        let update = json!({"client_id": "user-7", "event_name": "progress", "data": {"step": i}});
        let (status, _, body) = post_json(from, "/asf/internal/send_ui_update", &update);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        for (j, m) in members.iter_mut().enumerate() {
            let e = m.next_event_on("/ui_updates").expect("the update");
            assert_eq!(
                (e.name.as_str(), e.data()),
                ("progress", json!({"step": i})),
                "member on node {j}, update sent to node {i}"
            );
        }
    }
    for m in members {
        m.close();
    }
}

#[test]
fn a_join_that_misses_the_local_view_asks_redis_before_not_found() {
    let _dog = Watchdog::new(LIMIT, "lookup through redis");
    let redis = RedisServer::start();
    let c = Cluster::start(&redis, &[]);
    let data = audio_bytes(200_000, 47);
    let path = c.audio("direct.mp3", &data);
    // Written to the hash with no event: no node's view has it, only Redis does.
    let reg = json!({ "path": path.to_string_lossy(), "notified_at_ms": 1, "live": false });
    redis.cli(&["HSET", "t1:streams", "strm_direct", &reg.to_string()]);
    assert_eq!(health(c.b.addr)["registered_streams"], 0);
    assert_whole(
        &listen_once(c.b.addr, "strm_direct"),
        &data,
        "B, through HGET",
    );
    assert_eq!(
        health(c.b.addr)["registered_streams"],
        1,
        "kept in B's view"
    );
    assert_eq!(health(c.a.addr)["registered_streams"], 0, "A was not asked");
    assert_not_found(
        &listen_once(c.a.addr, "strm_nowhere"),
        "an id Redis lacks too",
    );
}

#[test]
fn the_ttl_sweep_removes_old_ids_from_redis_and_every_view_and_keeps_fresh_ones() {
    let _dog = Watchdog::new(LIMIT, "ttl sweep over redis");
    let redis = RedisServer::start();
    // TTL 5 s: both nodes sweep every second.
    let c = Cluster::start(&redis, &[("ASF_STREAM_TTL", "5")]);
    let (a, b) = (c.a.addr, c.b.addr);
    let data = audio_bytes(50_000, 31);
    let path = c.audio("fresh.mp3", &data);
    notify_ok(b, "strm_fresh", &path);
    // An id notified long ago, put there as a node of an older release would have (its
    // event carries no change number): both views take it, then a sweep removes it.
    let old = json!({"path": path.to_string_lossy(), "notified_at_ms": 1, "live": false});
    let event = json!({"op": "put", "id": "strm_old", "reg": old, "node": 1});
    let put =
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); redis.call('PUBLISH', KEYS[2], ARGV[3])";
    let (old, event) = (old.to_string(), event.to_string());
    let keys = ["2", "t1:streams", "t1:events"];
    redis.cli(&[&["EVAL", put][..], &keys, &["strm_old", &old, &event]].concat());
    wait_until(WAIT, "the sweep to remove the old id from redis", || {
        redis.cli(&["HEXISTS", "t1:streams", "strm_old"]).trim() == "0"
    });
    for addr in [a, b] {
        wait_until(WAIT, "the removal to reach both views", || {
            get(addr, "/asf/internal/streams/strm_old").0 == 404
        });
        assert_eq!(get(addr, "/asf/internal/streams/strm_fresh").0, 200);
        assert_eq!(health(addr)["registered_streams"], 1, "{}", health(addr));
    }
    assert_whole(
        &listen_once(a, "strm_fresh"),
        &data,
        "the fresh id after sweeps",
    );
    assert_not_found(&listen_once(b, "strm_old"), "the expired id");
}

/// A node that connects to `redis` as its own ACL user `user`, so that the test can cut that
/// node alone off Redis ([`cut_off`]) and let it back ([`let_back`]).
fn node_as_user(
    redis: &RedisServer,
    root: Option<&Path>,
    user: &str,
    extra: &[(&str, &str)],
) -> ChildServer {
    redis.cli(&["ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all"]);
    let url = format!("redis://{user}:pw@127.0.0.1:{}/0", redis.port);
    let mut env = vec![("ASF_REDIS_URL", url.as_str())];
    env.extend_from_slice(extra);
    node(redis, root, &env)
}

/// Disables `user` and closes its connections: its node loses Redis and cannot reconnect.
fn cut_off(redis: &RedisServer, user: &str) {
    redis.cli(&["ACL", "SETUSER", user, "off"]);
    redis.cli(&["CLIENT", "KILL", "USER", user]);
}

/// Enables `user` again: its node reconnects (and resyncs) on its next attempt.
fn let_back(redis: &RedisServer, user: &str) {
    redis.cli(&["ACL", "SETUSER", user, "on"]);
}

fn notify_live(addr: SocketAddr, id: &str, path: &Path, live: bool) {
    let body = json!({ "stream_id": id, "filepath": path.to_string_lossy(), "live": live });
    let (status, _, resp) = post_json(addr, "/asf/internal/notify_new_audio", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
}

#[test]
fn a_live_stream_completed_on_another_node_during_an_outage_ends_here_after_the_resync() {
    let _dog = Watchdog::new(LIMIT, "live completion across an outage");
    let redis = RedisServer::start();
    // Far longer than the test's waits: only the completing notify can end the stream.
    let extra = [("ASF_LIVE_IDLE_TIMEOUT", "120")];
    let a = node_as_user(&redis, None, "node_a", &extra);
    let root = a.root.path().canonicalize().expect("root");
    let b = node(&redis, Some(&root), &extra);
    for addr in [a.addr, b.addr] {
        wait_until(WAIT, "the node to connect to redis", || {
            health(addr)["registry_connected"] == true
        });
    }
    let data = audio_bytes(300_000, 53);
    let path = root.join("outage-live.mp3");
    std::fs::write(&path, &data[..100_000]).expect("write live file");
    notify_live(b.addr, "strm_away", &path, true);

    // A listener on A, at the live edge.
    let mut listener = SioClient::connect(a.addr);
    listener.join("strm_away");
    let mut head = StreamResult::default();
    listener.read_until_audio(&mut head, 100_000);
    let start = head.first("audio_control").cloned().unwrap_or_default();
    assert_eq!(start["live"], true, "{start}");

    // A loses Redis; meanwhile the file is finished and completed on B.
    cut_off(&redis, "node_a");
    wait_until(WAIT, "A to see Redis gone", || {
        health(a.addr)["registry_connected"] == false
    });
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open live file");
    std::io::Write::write_all(&mut file, &data[100_000..]).expect("append");
    drop(file);
    notify_live(b.addr, "strm_away", &path, false);
    assert_eq!(
        health(a.addr)["registry_connected"],
        false,
        "A is still away"
    );

    // A comes back: its resync finds the completed registration and ends the stream here.
    let_back(&redis, "node_a");
    wait_until(WAIT, "A to reconnect", || {
        health(a.addr)["registry_connected"] == true
    });
    let (status, shown) = show_stream(a.addr, "strm_away");
    assert_eq!((status, &shown["live"]), (200, &json!(false)), "{shown}");
    let rest = listener.collect_stream();
    listener.close();
    let r = head.merge(rest);
    assert_eq!(
        r.last_event_kind(),
        Some("end_of_stream"),
        "{:?}",
        r.events.last()
    );
    support::assert_audio(
        &r.audio,
        &data,
        "the live stream on A, completed on B while A was away",
    );
}

#[test]
fn an_entry_that_is_not_utf8_in_redis_is_skipped_and_the_nodes_still_connect_and_sweep() {
    let _dog = Watchdog::new(LIMIT, "non-UTF-8 entries in redis");
    let redis = RedisServer::start();
    let a = node(&redis, None, &[]);
    let root = a.root.path().canonicalize().expect("root");
    let data = audio_bytes(50_000, 59);
    let path = root.join("utf8.mp3");
    std::fs::write(&path, &data).expect("write audio");
    // Written by something else than asf: a value and an id that are not UTF-8, next to a
    // valid registration notified long ago and one notified now.
    let put = "redis.call('HSET', KEYS[1], 'strm_bad_value', '{\"path\":\"\\255\"}'); \
               redis.call('HSET', KEYS[1], 'strm_\\255', ARGV[1]); \
               redis.call('HSET', KEYS[1], 'strm_old', ARGV[1]); \
               redis.call('HSET', KEYS[1], 'strm_new', ARGV[2])";
    let old = json!({"path": path.to_string_lossy(), "notified_at_ms": 1, "live": false});
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let new = json!({"path": path.to_string_lossy(), "notified_at_ms": now_ms, "live": false});
    let (old, new) = (old.to_string(), new.to_string());
    redis.cli(&["EVAL", put, "1", "t1:streams", &old, &new]);
    assert_eq!(redis.cli(&["HLEN", "t1:streams"]).trim(), "4");

    // A node started now reads the whole hash: the unreadable entries are skipped. Its TTL
    // sweep first runs a tenth of the TTL (6 s) after its start: the count of 2 below is read
    // before it, and strm_new stays far from its expiry however slowly this test runs.
    let b = node(&redis, Some(&root), &[("ASF_STREAM_TTL", "60")]);
    wait_until(WAIT, "B to connect to redis", || {
        health(b.addr)["registry_connected"] == true
    });
    assert_eq!(
        health(b.addr)["registered_streams"],
        2,
        "{}",
        health(b.addr)
    );
    assert_whole(&listen_once(b.addr, "strm_new"), &data, "a valid id on B");
    // Not in B's view; asked of Redis, it is unreadable (the registry cannot answer).
    assert_eq!(show_stream(b.addr, "strm_bad_value").0, 503);
    // B's TTL sweep removes the old valid id despite the unreadable ones.
    wait_until(WAIT, "the sweep to remove the old id from redis", || {
        redis.cli(&["HEXISTS", "t1:streams", "strm_old"]).trim() == "0"
    });
    assert_eq!(
        redis.cli(&["HEXISTS", "t1:streams", "strm_new"]).trim(),
        "1"
    );
    // The bad entries are left to whoever wrote them.
    assert_eq!(redis.cli(&["HLEN", "t1:streams"]).trim(), "3");
    // A lookup that misses the view and finds a value that is not UTF-8 answers not found.
    assert_not_found(
        &listen_once(a.addr, "strm_bad_value"),
        "an unreadable entry",
    );
}

#[test]
fn stalled_listeners_resumed_by_a_live_notify_on_another_node_are_not_stalled_again() {
    let _dog = Watchdog::new(LIMIT, "stall resumed across nodes");
    let redis = RedisServer::start();
    // Long enough for every listener to be resumed and fed well within it.
    let c = Cluster::start(&redis, &[("ASF_LIVE_IDLE_TIMEOUT", "4")]);
    let (a, b) = (c.a.addr, c.b.addr);
    let data = audio_bytes(200_000, 61);
    let path = c.audio("resume-live.mp3", &data[..100_000]);
    notify_live(b, "strm_resume", &path, true);

    const N: usize = 20;
    let stalled = Arc::new(Barrier::new(N + 1));
    let resumed = Arc::new(Barrier::new(N + 1));
    let clients: Vec<SioClient> = (0..N).map(|_| SioClient::connect(a)).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (stalled, resumed) = (Arc::clone(&stalled), Arc::clone(&resumed));
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    client.join("strm_resume");
                    let first = client.collect_stream();
                    stalled.wait();
                    // Resumed: stream_status, then start_of_stream at the byte after the last.
                    let mut again = StreamResult::default();
                    loop {
                        let event = client.next_event().expect("resumed");
                        let start = event.name == "audio_control"
                            && event.data()["event"] == "start_of_stream";
                        if again.push(event) || start {
                            break;
                        }
                    }
                    resumed.wait();
                    let rest = if again.last_event_kind() == Some("start_of_stream") {
                        Some(client.collect_stream())
                    } else {
                        None
                    };
                    client.close();
                    (first, again, rest)
                })
                .expect("listener thread")
        })
        .collect();
    // Every listener gets the bytes written so far, then the stall.
    stalled.wait();
    // The generator goes on: it says so first (a live notify, as node B stores and publishes
    // it), then writes and completes the file. Other changes follow the notify's event at
    // once, so A's Redis thread is still applying them after it, before it can run the hook
    // that tells A's live session of the notify.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let reg = json!({"path": path.to_string_lossy(), "notified_at_ms": now_ms, "live": true});
    let event = json!({"op": "put", "id": "strm_resume", "reg": reg, "node": 2, "seq": 1});
    let burst = "redis.call('HSET', KEYS[1], 'strm_resume', ARGV[1]); \
                 redis.call('PUBLISH', KEYS[2], ARGV[2]); \
                 for i = 1, 5000 do \
                   redis.call('PUBLISH', KEYS[2], '{\"op\":\"del\",\"ids\":[],\"node\":2}') \
                 end";
    let (reg, event) = (reg.to_string(), event.to_string());
    redis.cli(&["EVAL", burst, "2", "t1:streams", "t1:events", &reg, &event]);
    resumed.wait();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open live file");
    std::io::Write::write_all(&mut file, &data[100_000..]).expect("append");
    drop(file);
    notify_live(b, "strm_resume", &path, false);
    for (i, h) in handles.into_iter().enumerate() {
        let (first, again, rest) = h.join().expect("listener");
        let what = format!("listener {i} on A");
        let err = first.first("stream_error").cloned().unwrap_or_default();
        assert!(
            err["message"]
                .as_str()
                .unwrap_or("")
                .contains("generation stalled"),
            "{what}: {err}"
        );
        support::assert_audio(&first.audio, &data[..100_000], &what);
        assert_eq!(
            again.control_names(),
            ["stream_status", "audio_control"],
            "{what}, resumed: {:?}",
            again.events
        );
        let start = again.first("audio_control").cloned().unwrap_or_default();
        assert_eq!(start["offset"], 100_000, "{what}: {start}");
        let rest = rest.expect("resumed");
        assert_eq!(
            rest.control_names(),
            ["audio_control"],
            "{what}, after the resume: {:?}",
            rest.events
        );
        assert_eq!(rest.last_event_kind(), Some("end_of_stream"), "{what}");
        support::assert_audio(&rest.audio, &data[100_000..], &format!("{what}, the rest"));
    }
}

/// The ids in `addr`'s view, as the stream listing shows them (no Redis round trip).
fn listed(addr: SocketAddr) -> Vec<String> {
    let (status, _, body) = get(addr, "/asf/internal/streams");
    assert_eq!(status, 200);
    let body = parse_json(&body);
    body["streams"]
        .as_array()
        .unwrap_or_else(|| panic!("no streams in {body}"))
        .iter()
        .filter(|s| s["registered"] == true)
        .map(|s| s["stream_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_registry_key_of_another_type_is_logged_as_such_and_answers_503_until_it_is_removed() {
    let _dog = Watchdog::new(LIMIT, "a registry key of another type");
    const REFUSED: &str =
        "The stream registry is unavailable: the change was not stored; retry later";
    let redis = RedisServer::start();
    // Something else than asf wrote a string where asf keeps its hash of registrations.
    redis.cli(&["SET", "t1:streams", "not a hash"]);
    let a = node(&redis, None, &[]);
    let root = a.root.path().canonicalize().expect("root");
    let path = root.join("wrongtype.mp3");
    std::fs::write(&path, audio_bytes(10_000, 81)).expect("write audio");
    wait_until(WAIT, "A to log the key of another type", || {
        a.log().contains("WRONGTYPE")
    });
    let log = a.log();
    let line = log
        .lines()
        .find(|l| l.contains("WRONGTYPE"))
        .expect("the line");
    assert!(line.contains("t1:streams"), "the key is named: {line}");
    assert!(
        !log.contains("cannot reach redis"),
        "a reachable Redis is not called unreachable:\n{log}"
    );
    assert_eq!(health(a.addr)["registry_connected"], false);
    let (status, body) = notify(a.addr, "strm_wt", &path);
    assert_eq!((status, &body["error"]), (503, &json!(REFUSED)), "{body}");

    // Removed: A connects on its own and stores again.
    redis.cli(&["DEL", "t1:streams"]);
    wait_until(WAIT, "A to connect once the key is removed", || {
        health(a.addr)["registry_connected"] == true
    });
    notify_ok(a.addr, "strm_wt", &path);
    let b = node(&redis, Some(&root), &[]);
    wait_until(WAIT, "B to connect", || {
        health(b.addr)["registry_connected"] == true
    });

    // Overwritten while both nodes are connected: A's notify is refused, A counts Redis as
    // down and says why, and nothing was published: B's view never gets the id.
    redis.cli(&["SET", "t1:streams", "again not a hash"]);
    let (status, body) = notify(a.addr, "strm_wt2", &path);
    assert_eq!((status, &body["error"]), (503, &json!(REFUSED)), "{body}");
    wait_until(WAIT, "A to count Redis as down", || {
        health(a.addr)["registry_connected"] == false
    });
    let wrong = a.log().matches("WRONGTYPE").count();
    assert!(wrong >= 2, "logged again once connected:\n{}", a.log());
    // An event published after the refused notify: once B has applied it, it has applied
    // whatever that notify published before it.
    let marker = json!({"op": "put", "id": "strm_marker", "node": 1, "seq": 0,
        "reg": {"path": path.to_string_lossy(), "notified_at_ms": 1, "live": false}});
    redis.cli(&["PUBLISH", "t1:events", &marker.to_string()]);
    wait_until(WAIT, "B to apply the marker event", || {
        listed(b.addr).contains(&"strm_marker".to_owned())
    });
    assert!(
        !listed(b.addr).contains(&"strm_wt2".to_owned()),
        "a refused notify reached another node's view: {:?}",
        listed(b.addr)
    );

    // Removed again: A resyncs with the (now empty) hash.
    redis.cli(&["DEL", "t1:streams"]);
    wait_until(WAIT, "A to reconnect", || {
        health(a.addr)["registry_connected"] == true
    });
    notify_ok(a.addr, "strm_wt2", &path);
    assert_eq!(
        health(a.addr)["registered_streams"],
        1,
        "{}",
        health(a.addr)
    );
}

/// The `name=<number>` field of a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A node on `redis` that has handled `count` messages published at once on its events
/// channel, message `i` (1 to `count`) being the Lua expression `message` of `i`.
fn node_after_flood(redis: &RedisServer, message: &str, count: u64) -> ChildServer {
    let a = node(redis, None, &[]);
    wait_until(WAIT, "A to connect", || {
        health(a.addr)["registry_connected"] == true
    });
    let flood =
        format!("for i = 1, tonumber(ARGV[1]) do redis.call('PUBLISH', KEYS[1], {message}) end");
    redis.cli(&["EVAL", &flood, "1", "t1:events", &count.to_string()]);
    // Then an event A can read: once A lists it, A has handled every message before it.
    let marker = json!({"op": "put", "id": "strm_marker", "node": 1, "seq": 0,
        "reg": {"path": "/nowhere/marker.mp3", "notified_at_ms": 1, "live": false}});
    redis.cli(&["PUBLISH", "t1:events", &marker.to_string()]);
    wait_until(WAIT, "A to apply the event after the flood", || {
        listed(a.addr).contains(&"strm_marker".to_owned())
    });
    a
}

#[test]
fn a_flood_of_unreadable_events_is_logged_once_in_full_then_counted() {
    let _dog = Watchdog::new(LIMIT, "a flood of unreadable events");
    const FLOOD: u64 = 1000;
    let redis = RedisServer::start();
    // Another tool publishes on asf's channel: a thousand events asf cannot read.
    let a = node_after_flood(&redis, "'not an asf event ' .. i", FLOOD);
    let full = |log: &str| {
        log.lines()
            .filter(|l| l.contains("unreadable registry event from redis"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let counts = |log: &str| {
        log.lines()
            .filter(|l| l.contains("more unreadable registry events from redis"))
            .map(|l| field(l, "count").unwrap_or_else(|| panic!("no count in {l}")))
            .collect::<Vec<_>>()
    };
    // The others are counted, and the count logged within an interval (10 s).
    wait_until(Duration::from_secs(60), "the count of the others", || {
        let log = a.log();
        full(&log).len() > 1 || counts(&log).iter().sum::<u64>() == FLOOD - 1
    });
    let log = a.log();
    let first = full(&log);
    assert_eq!(first.len(), 1, "one line in full: {first:?}");
    assert!(
        first[0].contains("not an asf event 1"),
        "it shows the event: {}",
        first[0]
    );
    // One count line per interval at most: far fewer than the events.
    assert!(counts(&log).len() < 10, "{:?}", counts(&log));
}

#[test]
fn a_flood_of_unreadable_ui_updates_from_another_node_is_rate_limited() {
    let _dog = Watchdog::new(LIMIT, "a flood of unreadable UI updates");
    const FLOOD: u64 = 1000;
    // What logging's rate limit writes of one kind per 10 s window.
    const WRITTEN: u64 = 10;
    let redis = RedisServer::start();
    // Well-formed events from "another node", each carrying an update A cannot read (no
    // client_id).
    let update = "cjson.encode({op = 'msg', node = 1, \
                  body = cjson.encode({event_name = 'progress', data = i})})";
    let a = node_after_flood(&redis, update, FLOOD);
    let kind = "unreadable UI update from another node";
    let full = |log: &str| {
        log.lines()
            .filter(|l| l.contains(kind) && !l.contains("more like this"))
            .count() as u64
    };
    let counted = |log: &str| {
        log.lines()
            .filter(|l| l.contains(kind) && l.contains("more like this"))
            .map(|l| field(l, "suppressed").unwrap_or_else(|| panic!("no count in {l}")))
            .sum::<u64>()
    };
    // The ones past the window's quota are counted, the count logged once the window is
    // over (10 s).
    wait_until(Duration::from_secs(60), "the count of the others", || {
        let log = a.log();
        full(&log) > WRITTEN || full(&log) + counted(&log) == FLOOD
    });
    let log = a.log();
    assert_eq!(full(&log), WRITTEN, "at most one window's quota in full");
    assert_eq!(counted(&log), FLOOD - WRITTEN);
    assert!(
        log.contains("'client_id' must be non-empty string."),
        "the lines say why"
    );
}

/// A "Redis" on a free port that answers every command of the first connection with `+OK`
/// and never answers anything on the others: a node's connect attempt gets its command
/// connection, then waits for ever at its pub/sub connection. Its threads end when the
/// node closes their connections.
fn stalling_redis() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                // A command starts with `*` at the start of a line (its arguments here are
                // plain words).
                let mut at_line_start = true;
                while let Ok(read) = conn.read(&mut buf) {
                    if read == 0 {
                        return;
                    }
                    let mut commands = 0;
                    for &b in &buf[..read] {
                        commands += usize::from(at_line_start && b == b'*');
                        at_line_start = b == b'\n';
                    }
                    if n == 0
                        && commands > 0
                        && conn.write_all(&b"+OK\r\n".repeat(commands)).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn requests_beyond_the_queue_bound_get_503_at_once_while_a_connect_attempt_is_pending() {
    let _dog = Watchdog::new(LIMIT, "the bound of the queue toward redis");
    const BOUND: usize = 1024;
    const BEYOND: usize = 40;
    let redis = stalling_redis();
    let url = format!("redis://{redis}/0");
    let a = ChildServer::start(
        &[("ASF_REDIS_URL", url.as_str()), ("ASF_REDIS_PREFIX", "t1:")],
        None,
    );
    let path = a.root.path().canonicalize().expect("root").join("q.mp3");
    std::fs::write(&path, audio_bytes(1000, 91)).expect("write audio");
    assert_eq!(health(a.addr)["registry_connected"], false);
    // BOUND + BEYOND notifies at once, each on its own connection: the first BOUND wait for
    // the connect attempt (for ever here), the others are answered at once.
    let body = json!({ "stream_id": "strm_q", "filepath": path.to_string_lossy() }).to_string();
    let request = format!(
        "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        addr = a.addr,
    );
    let mut pending: Vec<(std::net::TcpStream, Vec<u8>)> = (0..BOUND + BEYOND)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(a.addr).expect("connect");
            s.write_all(request.as_bytes()).expect("send notify");
            s.set_nonblocking(true).expect("nonblocking");
            (s, Vec::new())
        })
        .collect();
    let mut answered = Vec::new();
    wait_until(WAIT, "the notifies beyond the bound to be answered", || {
        use std::io::Read;
        pending.retain_mut(|(s, got)| {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        answered.push(String::from_utf8_lossy(got).into_owned());
                        return false;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(e) => panic!("read an answer: {e}"),
                }
            }
        });
        answered.len() >= BEYOND
    });
    for answer in &answered {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains(
                "The stream registry is unavailable: the change was not stored; retry later"
            ),
            "{answer}"
        );
    }
    assert_eq!(health(a.addr)["registry_connected"], false);
    // The log is read from the node's stderr as it comes: wait for the line.
    wait_until(WAIT, "the full queue to be logged", || {
        a.log().contains("the queue is full")
    });
}

#[test]
fn a_connect_attempt_that_redis_never_answers_ends_and_a_waiting_notify_gets_503() {
    let _dog = Watchdog::new(LIMIT, "a connect attempt redis never answers");
    // The stalling "Redis" answers the command connection and never the pub/sub one: the
    // attempt used to wait for ever, and a notify queued behind it was never answered.
    let redis = stalling_redis();
    let url = format!("redis://{redis}/0");
    let a = ChildServer::start(
        &[("ASF_REDIS_URL", url.as_str()), ("ASF_REDIS_PREFIX", "t2:")],
        None,
    );
    let path = a.root.path().canonicalize().expect("root").join("d.mp3");
    std::fs::write(&path, audio_bytes(1000, 92)).expect("write audio");
    let body = json!({ "stream_id": "strm_d", "filepath": path.to_string_lossy() }).to_string();
    let request = format!(
        "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        addr = a.addr,
    );
    let mut s = std::net::TcpStream::connect(a.addr).expect("connect");
    {
        use std::io::Write;
        s.write_all(request.as_bytes()).expect("send notify");
    }
    // A deadline against a hang, not a speed check: the attempt's own bound is seconds.
    s.set_read_timeout(Some(WAIT * 2)).expect("timeout");
    let mut answer = Vec::new();
    {
        use std::io::Read;
        s.read_to_end(&mut answer)
            .expect("the notify is answered once the attempt ends");
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer
            .contains("The stream registry is unavailable: the change was not stored; retry later"),
        "{answer}"
    );
    assert_eq!(health(a.addr)["registry_connected"], false);
    wait_until(WAIT, "the attempt's end in the log", || {
        a.log().contains("no answer within")
    });
}
