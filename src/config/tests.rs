use std::collections::HashMap;

use super::source::read_dotenv;
use super::*;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> Config {
    match Config::from_source(&map(pairs)) {
        Ok(c) => c,
        Err(e) => panic!("{pairs:?} should parse: {e}"),
    }
}

/// Asserts `name=value` is rejected with a one-line error naming both.
fn parse_err(name: &str, value: &str) -> String {
    match Config::from_source(&map(&[(name, value)])) {
        Ok(_) => panic!("{name}={value:?} should be rejected"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
            assert!(msg.starts_with(&format!("{name}=")), "{msg}");
            assert!(msg.contains(&value.escape_debug().to_string()), "{msg}");
            assert!(msg.contains(" is not valid: "), "{msg}");
            msg
        }
    }
}

#[test]
fn empty_source_gives_defaults() {
    let c = parse(&[]);
    assert!(c.secret_key_generated);
    assert_eq!(c.secret_key.expose().len(), 64);
    assert!(c
        .secret_key
        .expose()
        .chars()
        .all(|ch| ch.is_ascii_hexdigit()));
    assert_eq!(c.cors_allowed_origins, CorsOrigins::Any);
    assert_eq!(c.chunk_size, 4096);
    assert_eq!(c.stream_sleep_interval, Duration::from_millis(10));
    assert_eq!(c.pacing_quantum, Duration::from_millis(100));
    assert_eq!(c.host.to_string(), "0.0.0.0");
    assert_eq!(c.port, 5006);
    assert!(c.debug_mode);
    assert_eq!(
        c.audio_root,
        PathBuf::from("/srv/aethercast/generated_audio")
    );
    assert_eq!(c.workers, default_workers());
    assert_eq!(c.log, None);
    assert_eq!(c.listen_backlog, 4096);
    assert_eq!(c.ping_interval, Duration::from_secs(25));
    assert_eq!(c.ping_timeout, Duration::from_secs(20));
    assert_eq!(c.connect_timeout, Duration::from_secs(45));
    assert_eq!(c.max_payload, 1_000_000);
    assert_eq!(c.read_block_size, 262_144);
    assert_eq!(c.stream_cache_bytes, 67_108_864);
    assert_eq!(c.max_lag_bytes, 4 << 20);
    assert_eq!(c.send_buffer_bytes, 131_072);
    assert_eq!(c.stall_timeout, Duration::from_secs(30));
    assert_eq!(c.live_idle_timeout, Duration::from_secs(120));
    assert_eq!(c.max_connections, 100_000);
    assert_eq!(c.max_streams, 100_000);
    assert_eq!(c.header_timeout, Duration::from_secs(10));
    assert_eq!(c.body_timeout, Duration::from_secs(10));
    assert_eq!(c.stream_summary_interval, Duration::from_secs(60));
    assert_eq!(c.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(c.max_events_per_sec, 200);
    assert!(c.internal_token.is_none());
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.state_dir, Some(PathBuf::from("./asf-state")));
    assert_eq!(c.stream_ttl, None);
    assert_eq!(c.log_filter(), "debug");
}

#[test]
fn state_dir_is_a_path_or_none() {
    let c = parse(&[(ASF_STATE_DIR, "/var/lib/asf")]);
    assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/asf")));
    assert!(c.summary().contains("state_dir=/var/lib/asf"));
    for none in ["none", "NONE"] {
        let c = parse(&[(ASF_STATE_DIR, none)]);
        assert_eq!(c.state_dir, None);
        assert!(c.summary().contains("state_dir=none"));
    }
    let msg = parse_err(ASF_STATE_DIR, " ");
    assert!(msg.contains("or none"), "{msg}");
}

#[test]
fn stream_ttl_is_positive_seconds() {
    let c = parse(&[(ASF_STREAM_TTL, "86400")]);
    assert_eq!(c.stream_ttl, Some(Duration::from_secs(86_400)));
    assert!(c.summary().contains("stream_ttl=86400s"));
    assert_eq!(
        parse(&[(ASF_STREAM_TTL, "0.5")]).stream_ttl,
        Some(Duration::from_millis(500))
    );
    assert!(parse(&[]).summary().contains("stream_ttl=unset"));
    for bad in ["0", "-1", "abc", "inf", "315360001"] {
        let msg = parse_err(ASF_STREAM_TTL, bad);
        assert!(msg.contains("seconds greater than 0"), "{msg}");
    }
}

#[test]
fn default_workers_leave_one_core() {
    assert_eq!(workers_for_cores(0), 1);
    assert_eq!(workers_for_cores(1), 1);
    assert_eq!(workers_for_cores(2), 1);
    assert_eq!(workers_for_cores(8), 7);
    assert_eq!(workers_for_cores(1024), 256);
}

#[test]
fn generated_secrets_differ() {
    assert_ne!(
        parse(&[]).secret_key.expose(),
        parse(&[]).secret_key.expose()
    );
}

#[test]
fn every_value_parses() {
    let c = parse(&[
        (ASF_SECRET_KEY, "s3cret"),
        (
            ASF_CORS_ALLOWED_ORIGINS,
            " https://a.example/ , ,http://b:8080",
        ),
        (ASF_CHUNK_SIZE, " 1048576 "),
        (ASF_STREAM_SLEEP_INTERVAL, "0"),
        (ASF_PACING_QUANTUM, "0"),
        (ASF_HOST, "::1"),
        (ASF_PORT, "0"),
        (ASF_DEBUG_MODE, "Off"),
        (ASF_AUDIO_ROOT, "/tmp/audio"),
        (ASF_WORKERS, "256"),
        (ASF_LOG, "asf=trace,info"),
        (ASF_LISTEN_BACKLOG, "65535"),
        (ASF_PING_INTERVAL_MS, "1"),
        (ASF_PING_TIMEOUT_MS, "3600000"),
        (ASF_CONNECT_TIMEOUT_MS, "500"),
        (ASF_MAX_PAYLOAD, "1024"),
        (ASF_READ_BLOCK_SIZE, "16777216"),
        (ASF_STREAM_CACHE_BYTES, "0"),
        (ASF_MAX_LAG_BYTES, "1"),
        (ASF_SEND_BUFFER_BYTES, "0"),
        (ASF_STALL_TIMEOUT, "0.5"),
        (ASF_LIVE_IDLE_TIMEOUT, "0.25"),
        (ASF_MAX_CONNECTIONS, "1"),
        (ASF_HEADER_TIMEOUT, "2.5"),
        (ASF_BODY_TIMEOUT, "0.25"),
        (ASF_KEEPALIVE_TIMEOUT, "1e2"),
        (ASF_MAX_EVENTS_PER_SEC, "1"),
        (ASF_INTERNAL_TOKEN, "tok"),
        (ASF_SHUTDOWN_GRACE, "0"),
    ]);
    assert!(!c.secret_key_generated);
    assert_eq!(c.secret_key.expose(), "s3cret");
    assert_eq!(
        c.cors_allowed_origins,
        CorsOrigins::List(vec!["https://a.example".into(), "http://b:8080".into()])
    );
    assert_eq!(c.chunk_size, 1 << 20);
    assert_eq!(c.stream_sleep_interval, Duration::ZERO);
    assert_eq!(c.pacing_quantum, Duration::ZERO);
    assert_eq!(c.host.to_string(), "::1");
    assert_eq!(c.port, 0);
    assert!(!c.debug_mode);
    assert_eq!(c.audio_root, PathBuf::from("/tmp/audio"));
    assert_eq!(c.workers, 256);
    assert_eq!(c.log_filter(), "asf=trace,info");
    assert_eq!(c.listen_backlog, 65535);
    assert_eq!(c.ping_interval, Duration::from_millis(1));
    assert_eq!(c.ping_timeout, Duration::from_secs(3600));
    assert_eq!(c.connect_timeout, Duration::from_millis(500));
    assert_eq!(c.max_payload, 1024);
    assert_eq!(c.read_block_size, 16 << 20);
    assert_eq!(c.stream_cache_bytes, 0);
    assert_eq!(c.max_lag_bytes, 1);
    assert_eq!(c.send_buffer_bytes, 0);
    assert_eq!(c.stall_timeout, Duration::from_millis(500));
    assert_eq!(c.live_idle_timeout, Duration::from_millis(250));
    assert_eq!(c.max_connections, 1);
    assert_eq!(c.header_timeout, Duration::from_millis(2500));
    assert_eq!(c.body_timeout, Duration::from_millis(250));
    assert_eq!(c.keepalive_timeout, Duration::from_secs(100));
    assert_eq!(c.max_events_per_sec, 1);
    assert!(c.internal_token.as_ref().is_some_and(|t| t.matches("tok")));
    assert_eq!(c.shutdown_grace, Duration::ZERO);
}

#[test]
fn error_text_is_exact() {
    let err = Config::from_source(&map(&[(ASF_CHUNK_SIZE, "abc")])).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("ASF_CHUNK_SIZE=abc is not valid: expected a whole number of bytes from 1 to 1048576")
    );
}

#[test]
fn empty_numeric_is_invalid_and_says_so() {
    for name in [
        ASF_CHUNK_SIZE,
        ASF_PORT,
        ASF_STALL_TIMEOUT,
        ASF_DEBUG_MODE,
        ASF_HOST,
    ] {
        assert!(parse_err(name, "").contains("empty"), "{name}");
        assert!(parse_err(name, "  ").contains("empty"), "{name}");
    }
    parse_err(ASF_CORS_ALLOWED_ORIGINS, "");
    parse_err(ASF_CORS_ALLOWED_ORIGINS, " , ,");
    parse_err(ASF_AUDIO_ROOT, "");
}

#[test]
fn empty_means_unset_for_free_text() {
    let c = parse(&[
        (ASF_LOG, ""),
        (ASF_INTERNAL_TOKEN, " "),
        (ASF_SECRET_KEY, ""),
    ]);
    assert_eq!(c.log, None);
    assert!(c.internal_token.is_none());
    assert!(c.secret_key_generated);
}

#[test]
fn out_of_range_and_malformed_numbers_are_rejected() {
    for v in [
        "abc",
        "0",
        "1048577",
        "-1",
        "1.5",
        "4k",
        "99999999999999999999999",
        "+4096",
        " 4096x",
    ] {
        parse_err(ASF_CHUNK_SIZE, v);
    }
    parse_err(ASF_PORT, "+80");
    parse_err(ASF_STALL_TIMEOUT, "+5");
    for v in ["70000", "65536", "-1", "http"] {
        assert!(parse_err(ASF_PORT, v).contains("0 to 65535"));
    }
    for v in ["0", "257", "x"] {
        parse_err(ASF_WORKERS, v);
    }
    parse_err(ASF_LISTEN_BACKLOG, "0");
    parse_err(ASF_LISTEN_BACKLOG, "65536");
    for name in [
        ASF_PING_INTERVAL_MS,
        ASF_PING_TIMEOUT_MS,
        ASF_CONNECT_TIMEOUT_MS,
    ] {
        parse_err(name, "0");
        parse_err(name, "3600001");
    }
    parse_err(ASF_MAX_PAYLOAD, "1023");
    parse_err(ASF_MAX_PAYLOAD, "100000001");
    parse_err(ASF_READ_BLOCK_SIZE, "4095");
    parse_err(ASF_READ_BLOCK_SIZE, "16777217");
    parse_err(ASF_STREAM_CACHE_BYTES, "4294967297");
    parse_err(ASF_MAX_LAG_BYTES, "0");
    parse_err(ASF_SEND_BUFFER_BYTES, "1073741825");
    parse_err(ASF_SEND_BUFFER_BYTES, "-1");
    parse_err(ASF_MAX_CONNECTIONS, "0");
    parse_err(ASF_MAX_STREAMS, "0");
    parse_err(ASF_MAX_EVENTS_PER_SEC, "0");
    parse_err(ASF_MAX_EVENTS_PER_SEC, "4294967296");
}

#[test]
fn bad_intervals_are_rejected() {
    for v in [
        "-1", "-0.001", "NaN", "nan", "inf", "-inf", "infinity", "60.001", "1e300", "x",
    ] {
        parse_err(ASF_STREAM_SLEEP_INTERVAL, v);
    }
    for v in ["0", "-5", "3601", "NaN", "inf"] {
        parse_err(ASF_STALL_TIMEOUT, v);
    }
    for v in ["0", "-1", "86401", "NaN", "inf", ""] {
        parse_err(ASF_LIVE_IDLE_TIMEOUT, v);
    }
    for name in [
        ASF_HEADER_TIMEOUT,
        ASF_BODY_TIMEOUT,
        ASF_KEEPALIVE_TIMEOUT,
        ASF_STREAM_SUMMARY_INTERVAL,
    ] {
        for v in ["0", "-1", "inf", "1e30"] {
            parse_err(name, v);
        }
    }
    for v in ["-0.01", "1.001", "NaN", "inf", "", "50ms"] {
        parse_err(ASF_PACING_QUANTUM, v);
    }
    parse_err(ASF_SHUTDOWN_GRACE, "-1");
    parse_err(ASF_SHUTDOWN_GRACE, "3601");
    assert_eq!(
        parse(&[(ASF_PACING_QUANTUM, "0.04")]).pacing_quantum,
        Duration::from_millis(40)
    );
    assert_eq!(
        parse(&[(ASF_PACING_QUANTUM, "1")]).pacing_quantum,
        Duration::from_secs(1)
    );
    assert_eq!(
        parse(&[(ASF_STREAM_SLEEP_INTERVAL, "60")]).stream_sleep_interval,
        Duration::from_secs(60)
    );
}

#[test]
fn booleans() {
    for (v, want) in [
        ("TRUE", true),
        ("1", true),
        ("Yes", true),
        ("on", true),
        ("False", false),
        ("0", false),
        ("NO", false),
        ("off", false),
    ] {
        assert_eq!(parse(&[(ASF_DEBUG_MODE, v)]).debug_mode, want, "{v}");
    }
    for v in ["maybe", "2", "t", "enabled"] {
        parse_err(ASF_DEBUG_MODE, v);
    }
}

#[test]
fn hosts() {
    assert_eq!(
        parse(&[(ASF_HOST, "127.0.0.1")]).host.to_string(),
        "127.0.0.1"
    );
    for v in ["localhost", "256.0.0.1", "1.2.3"] {
        parse_err(ASF_HOST, v);
    }
}

#[test]
fn bad_log_filter_is_rejected() {
    parse_err(ASF_LOG, "asf=loud");
    assert_eq!(parse(&[(ASF_DEBUG_MODE, "false")]).log_filter(), "info");
}

#[test]
fn newline_in_value_keeps_error_on_one_line() {
    let msg = parse_err(ASF_CHUNK_SIZE, "12\n34");
    assert!(
        msg.starts_with("ASF_CHUNK_SIZE=12\\n34 is not valid"),
        "{msg}"
    );
}

#[test]
fn cors_rules() {
    let any = parse(&[(ASF_CORS_ALLOWED_ORIGINS, "*")]).cors_allowed_origins;
    assert_eq!(any, CorsOrigins::Any);
    assert!(any.allows("http://anything"));
    let mixed = parse(&[(ASF_CORS_ALLOWED_ORIGINS, "http://a, *")]).cors_allowed_origins;
    assert_eq!(mixed, CorsOrigins::Any);
    let list =
        parse(&[(ASF_CORS_ALLOWED_ORIGINS, "https://App.example/,http://b")]).cors_allowed_origins;
    assert!(list.allows("https://app.example"));
    assert!(list.allows("https://app.example/"));
    assert!(list.allows("http://b"));
    assert!(!list.allows("http://c"));
    assert!(!list.allows(""));
    assert!(!list.allows("https://app.example.evil"));
    assert_eq!(list.to_string(), "https://App.example,http://b");
    parse_err(ASF_CORS_ALLOWED_ORIGINS, "http://a b");
    for schemeless in [
        "app.example",
        "https://a,b.example:8080",
        "//app.example",
        "https://",
    ] {
        let msg = parse_err(ASF_CORS_ALLOWED_ORIGINS, schemeless);
        assert!(msg.contains("has no scheme"), "{msg}");
    }
    // An Origin header is scheme://host[:port]: an entry with more would never match.
    for with_path in [
        "https://app.example/player",
        "https://app.example?x=1",
        "https://user@app.example",
        "http://b,https://app.example/#top",
    ] {
        let msg = parse_err(ASF_CORS_ALLOWED_ORIGINS, with_path);
        assert!(msg.contains("has a path"), "{msg}");
    }
}

#[test]
fn secrets_never_print() {
    let c = parse(&[
        (ASF_SECRET_KEY, "topsecret"),
        (ASF_INTERNAL_TOKEN, "tokentoken"),
    ]);
    for text in [format!("{c:?}"), c.summary(), format!("{}", c.secret_key)] {
        assert!(!text.contains("topsecret"), "{text}");
        assert!(!text.contains("tokentoken"), "{text}");
    }
    assert!(c.summary().contains("secret_key=****"));
    assert!(c.summary().contains("internal_token=****"));
    let s = SecretString::new("abc");
    assert!(s.matches("abc"));
    assert!(!s.matches("abd"));
    assert!(!s.matches("ab"));
}

#[test]
fn summary_is_one_line_of_tokens() {
    let c = parse(&[
        (ASF_CHUNK_SIZE, "8192"),
        (ASF_AUDIO_ROOT, "/a b"),
        (ASF_PORT, "7"),
    ]);
    let s = c.summary();
    assert!(!s.contains('\n'));
    let tokens: Vec<&str> = s.split_whitespace().collect();
    assert!(tokens.contains(&"chunk_size=8192"), "{s}");
    assert!(tokens.contains(&"port=7"), "{s}");
    assert!(s.contains("audio_root=\"/a b\""), "{s}");
    assert!(tokens.contains(&"log=debug"), "{s}");
}

#[test]
fn process_env_wins_over_dotenv_and_only_asf_names_are_kept() {
    let file = map(&[(ASF_CHUNK_SIZE, "8192"), (ASF_PORT, "1"), ("OTHER", "x")]);
    let env = vec![
        (ASF_CHUNK_SIZE.to_owned(), "1024".to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
    ];
    let src = EnvSource::layer(file, env);
    assert_eq!(src.get(ASF_CHUNK_SIZE).as_deref(), Some("1024"));
    assert_eq!(src.get(ASF_PORT).as_deref(), Some("1"));
    assert_eq!(src.get("OTHER"), None);
    assert_eq!(src.get("HOME"), None);
    assert!(!format!("{src:?}").contains("8192"));
}

#[test]
fn dotenv_file_is_read_missing_is_fine_malformed_is_named() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let path = dir.path().join(".env");
    assert!(read_dotenv(&path).is_ok_and(|m| m.is_empty()));

    let write = |text: &str| {
        if let Err(e) = std::fs::write(&path, text) {
            panic!("write .env: {e}");
        }
    };
    write("# comment\nASF_CHUNK_SIZE=8192\nexport ASF_PORT=\"7\"\nASF_PORT=8\n");
    let vars = read_dotenv(&path).unwrap_or_default();
    assert_eq!(vars.get(ASF_CHUNK_SIZE).map(String::as_str), Some("8192"));
    assert_eq!(vars.get(ASF_PORT).map(String::as_str), Some("7"));

    write("ASF_PORT=1\nthis is not valid secretvalue\n");
    match read_dotenv(&path) {
        Ok(v) => panic!("malformed .env accepted: {v:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(".env"), "{msg}");
            assert!(msg.contains("line 2"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert!(!msg.contains("secretvalue"), "{msg}");
        }
    }

    write("ASF_SECRET_KEY='unterminated\n");
    assert!(matches!(
        read_dotenv(&path),
        Err(ConfigError::DotEnv { .. })
    ));
    assert!(matches!(
        EnvSource::load(dir.path()),
        Err(ConfigError::DotEnv { .. })
    ));
}

#[test]
fn ui_updates_namespace_rules() {
    assert_eq!(
        Config::from_source(&map(&[])).unwrap().ui_updates_namespace,
        "/ui_updates"
    );
    let c =
        Config::from_source(&map(&[(ASF_UI_UPDATES_NAMESPACE, "/ui-v2/updates_1.x~")])).unwrap();
    assert_eq!(c.ui_updates_namespace, "/ui-v2/updates_1.x~");
    assert!(c
        .summary()
        .contains("ui_updates_namespace=/ui-v2/updates_1.x~"));
    let longest = format!("/{}", "u".repeat(MAX_NAMESPACE_LEN - 1));
    assert!(Config::from_source(&map(&[(ASF_UI_UPDATES_NAMESPACE, &longest)])).is_ok());
    for bad in [
        "/",
        "ui_updates",
        "/ui updates",
        "/ui,x",
        "/ui?x",
        "/ui#x",
        "/é",
    ] {
        let msg = parse_err(ASF_UI_UPDATES_NAMESPACE, bad);
        assert!(msg.contains("expected a Socket.IO namespace"), "{msg}");
    }
    parse_err(ASF_UI_UPDATES_NAMESPACE, &format!("{longest}u"));
    let msg = parse_err(ASF_UI_UPDATES_NAMESPACE, "/api/v1/podcasts/stream");
    assert!(msg.contains("is the audio namespace"), "{msg}");
}

#[test]
fn redis_url_and_prefix() {
    let c = parse(&[]);
    assert!(c.redis_url.is_none());
    assert_eq!(c.redis_prefix, "asf:");
    assert!(c.summary().contains("redis_url=unset redis_prefix=asf:"));
    let c = parse(&[
        (ASF_REDIS_URL, "redis://asf:s3cret@10.0.0.5:6380/2"),
        (ASF_REDIS_PREFIX, "prod-asf:"),
    ]);
    assert_eq!(
        c.redis_url.as_ref().map(|u| u.expose().to_owned()),
        Some("redis://asf:s3cret@10.0.0.5:6380/2".to_owned())
    );
    let summary = c.summary();
    assert!(
        summary.contains("redis_url=redis://asf:****@10.0.0.5:6380/2"),
        "{summary}"
    );
    assert!(!summary.contains("s3cret"), "{summary}");
    assert!(summary.contains("redis_prefix=prod-asf:"));
    assert!(parse(&[(ASF_REDIS_URL, "redis://localhost")])
        .redis_url
        .is_some());
    for bad in [
        "localhost:6379",
        "http://x",
        "redis://",
        "redis://:6379",
        "",
    ] {
        parse_err(ASF_REDIS_URL, bad);
    }
    assert!(parse_err(ASF_REDIS_URL, "rediss://h").contains("TLS"));
    for bad in ["", "a b", &"x".repeat(65)] {
        parse_err(ASF_REDIS_PREFIX, bad);
    }
}

#[test]
fn observability_settings() {
    let c = parse(&[]);
    assert_eq!(c.internal_addr, None);
    assert!(!c.metrics_open);
    assert_eq!(c.log_format, LogFormat::Text);
    let c = parse(&[
        (ASF_INTERNAL_ADDR, " 127.0.0.1:5016 "),
        (ASF_METRICS_OPEN, "true"),
        (ASF_LOG_FORMAT, "JSON"),
    ]);
    assert_eq!(c.internal_addr, Some("127.0.0.1:5016".parse().unwrap()));
    assert!(c.metrics_open);
    assert_eq!(c.log_format, LogFormat::Json);
    assert!(c.summary().contains("internal_addr=127.0.0.1:5016"));
    assert!(c.summary().contains("log_format=json"));
    assert_eq!(parse(&[(ASF_INTERNAL_ADDR, "")]).internal_addr, None);
    assert!(parse_err(ASF_INTERNAL_ADDR, "localhost").contains("expected IP:port"));
    assert!(parse_err(ASF_INTERNAL_ADDR, "127.0.0.1").contains("expected IP:port"));
    assert!(parse_err(ASF_LOG_FORMAT, "yaml").contains("expected text or json"));
    parse_err(ASF_METRICS_OPEN, "maybe");
}

#[test]
fn sendfile_is_off_by_default_and_switches_on() {
    assert!(!parse(&[]).sendfile);
    let c = parse(&[(ASF_SENDFILE, "true")]);
    assert!(c.sendfile);
    assert!(c.summary().contains("sendfile=true"));
    assert!(!parse(&[(ASF_SENDFILE, "off")]).sendfile);
    parse_err(ASF_SENDFILE, "sometimes");
}

#[test]
fn a_dollar_in_an_unquoted_or_double_quoted_dotenv_value_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(".env");
    for line in [
        "ASF_INTERNAL_TOKEN=$ecretT0ken",
        "ASF_INTERNAL_TOKEN=abc$def",
        "ASF_INTERNAL_TOKEN=\"abc${HOME}\"",
    ] {
        std::fs::write(&path, format!("# a comment with $ is fine\n{line}\n")).expect("write");
        match read_dotenv(&path) {
            Ok(v) => panic!("{line:?} read as {v:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("line 2") && msg.contains("single quotes"),
                    "{msg}"
                );
                assert!(!msg.contains("ecret") && !msg.contains("def"), "{msg}");
            }
        }
    }
    // A `$` in a comment after the value is not expanded: the value reads as written.
    std::fs::write(
        &path,
        "ASF_PORT=3001 # not $HOME\nASF_INTERNAL_ADDR=\"127.0.0.1:9\" # costs $5\n",
    )
    .expect("write");
    let vars = read_dotenv(&path).expect("a $ in an inline comment");
    assert_eq!(vars.get(ASF_PORT).map(String::as_str), Some("3001"));
    assert_eq!(
        vars.get(ASF_INTERNAL_ADDR).map(String::as_str),
        Some("127.0.0.1:9")
    );
    // But a `#` without whitespace before it is part of the value.
    std::fs::write(&path, "ASF_INTERNAL_TOKEN=ab#$cd\n").expect("write");
    assert!(read_dotenv(&path).is_err());
    // Single quotes keep it as written; other variables are not ASF's concern.
    std::fs::write(&path, "ASF_INTERNAL_TOKEN='$ecret'\nOTHER=$x\n").expect("write");
    let vars = read_dotenv(&path).expect("single-quoted");
    assert_eq!(
        vars.get(ASF_INTERNAL_TOKEN).map(String::as_str),
        Some("$ecret")
    );
}

/// Found by the `dotenv` fuzz target: values dotenvy expands although the `$` sits where a
/// line-by-line look missed it (a quoted value going on over lines, a quote followed by more
/// value, `export` and a tab). Each read as something else than written, silently.
#[test]
fn a_dollar_that_dotenvy_expands_is_refused_wherever_it_sits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(".env");
    for (text, line) in [
        ("ASF_INTERNAL_TOKEN=\"abc\n${ecret}\"\n", 1),
        ("ASF_PORT=1\nASF_INTERNAL_TOKEN=\"a\nb\nc${d}\"\n", 2),
        ("ASF_INTERNAL_TOKEN='abc'$ecret\n", 1),
        ("ASF_INTERNAL_TOKEN=\"abc\"$ecret\n", 1),
        ("ASF_INTERNAL_TOKEN=abc'def'$ecret\n", 1),
        ("export\tASF_INTERNAL_TOKEN=$ecret\n", 1),
        ("OTHER=\"x\ny\"\nASF_INTERNAL_TOKEN=$ecret\n", 3),
    ] {
        std::fs::write(&path, text).expect("write");
        match read_dotenv(&path) {
            Ok(v) => panic!("{text:?} read as {v:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("line {line}:")) && msg.contains("single quotes"),
                    "{text:?}: {msg}"
                );
                assert!(!msg.contains("ecret"), "{msg}");
            }
        }
    }
    // A `$` that dotenvy keeps is fine: single quotes, a comment, another variable's value.
    for (text, value) in [
        ("ASF_INTERNAL_TOKEN='ab$c'\n", "ab$c"),
        ("ASF_INTERNAL_TOKEN='a\nb$c'\n", "a\nb$c"),
        ("ASF_INTERNAL_TOKEN= #$not a value\n", ""),
        ("ASF_INTERNAL_TOKEN=abc # $comment\n", "abc"),
        ("OTHER=\"x\n${y}\"\nASF_INTERNAL_TOKEN=abc\n", "abc"),
    ] {
        std::fs::write(&path, text).expect("write");
        let vars = read_dotenv(&path).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(
            vars.get(ASF_INTERNAL_TOKEN).map(String::as_str),
            Some(value),
            "{text:?}"
        );
    }
}

#[test]
fn an_internal_token_with_spaces_around_it_is_refused_without_showing_it() {
    for raw in ["tok\n", " tok", "tok "] {
        match Config::from_source(&map(&[(ASF_INTERNAL_TOKEN, raw)])) {
            Ok(_) => panic!("{raw:?} accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("ASF_INTERNAL_TOKEN is not valid: "),
                    "{msg}"
                );
                assert!(!msg.contains("tok"), "{msg}");
            }
        }
    }
    assert!(parse(&[(ASF_INTERNAL_TOKEN, "tok")])
        .internal_token
        .is_some());
}

#[test]
fn the_internal_listener_may_not_share_the_public_port() {
    let err = Config::from_source(&map(&[
        (ASF_PORT, "5109"),
        (ASF_INTERNAL_ADDR, "127.0.0.1:5109"),
    ]));
    let Err(e) = err else {
        panic!("the public port was accepted for the internal listener");
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("ASF_INTERNAL_ADDR=127.0.0.1:5109 is not valid: its port is ASF_PORT"),
        "{msg}"
    );
    let ok = parse(&[(ASF_PORT, "5109"), (ASF_INTERNAL_ADDR, "127.0.0.1:5110")]);
    assert!(ok.internal_addr.is_some());
}

#[test]
fn a_positive_duration_below_one_nanosecond_is_refused_not_made_zero() {
    // 1e-12 is "greater than 0" but a Duration of it is 0, which the range excludes (a
    // zero TTL, for one, would make every stream id expired).
    for name in [
        ASF_STALL_TIMEOUT,
        ASF_LIVE_IDLE_TIMEOUT,
        ASF_HEADER_TIMEOUT,
        ASF_BODY_TIMEOUT,
        ASF_KEEPALIVE_TIMEOUT,
        ASF_STREAM_SUMMARY_INTERVAL,
        ASF_STREAM_TTL,
    ] {
        for v in ["1e-12", "0.0000000001", "4.9e-324"] {
            let msg = parse_err(name, v);
            assert!(msg.contains("below 1 ns"), "{msg}");
        }
    }
    assert_eq!(
        parse(&[(ASF_STALL_TIMEOUT, "0.000000001")]).stall_timeout,
        Duration::from_nanos(1)
    );
    // Where 0 is allowed, a tiny value is 0 as asked.
    assert_eq!(
        parse(&[(ASF_STREAM_SLEEP_INTERVAL, "1e-12")]).stream_sleep_interval,
        Duration::ZERO
    );
    assert_eq!(
        parse(&[(ASF_SHUTDOWN_GRACE, "-0")]).shutdown_grace,
        Duration::ZERO
    );
}

#[test]
fn a_bad_redis_url_is_refused_without_showing_its_password() {
    for bad in [
        "redis://asf:s3cret@ 10.0.0.5:6379",
        "redis://asf:s3cret@10.0.0.5:port",
        "redis://asf:s3cret@10.0.0.5:6379/db",
        "http://asf:s3cret@10.0.0.5",
        "redis:/asf:s3cret@10.0.0.5",
    ] {
        let msg = Config::from_source(&map(&[(ASF_REDIS_URL, bad)]))
            .expect_err(bad)
            .to_string();
        assert!(msg.starts_with("ASF_REDIS_URL="), "{msg}");
        assert!(msg.contains(" is not valid: expected redis://"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(msg.contains("****@"), "{msg}");
    }
    assert!(parse_err(ASF_REDIS_URL, "redis://h:99999").contains("port \"99999\""));
    assert!(parse_err(ASF_REDIS_URL, "redis://h/abc").contains("database \"abc\""));
    for good in [
        "redis://h:6379/",
        "redis://h:/0",
        "redis://[::1]:6379/1",
        "redis://[::1]/1",
        "redis://h/0?protocol=resp3",
        "redis://:pw@h",
    ] {
        assert!(
            parse(&[(ASF_REDIS_URL, good)]).redis_url.is_some(),
            "{good}"
        );
    }
}

/// The `ASF_*` names this module declares (`pub const ASF_X: &str = "ASF_X";`).
fn declared_names() -> std::collections::BTreeSet<String> {
    include_str!("mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("pub const ASF_"))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| format!("ASF_{name}"))
        .collect()
}

#[test]
fn every_setting_is_in_the_readme_table_and_in_env_example_whose_values_parse() {
    let declared = declared_names();
    assert!(declared.len() >= 40, "{declared:?}");
    let readme: std::collections::BTreeSet<String> = include_str!("../../README.md")
        .lines()
        .skip_while(|l| !l.starts_with("| variable | default | allowed | meaning |"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.strip_prefix("| `ASF_"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| format!("ASF_{name}"))
        .collect();
    assert_eq!(readme, declared, "README's settings table vs src/config");
    let example: Vec<(String, String)> = include_str!("../../.env.example")
        .lines()
        .filter_map(|l| l.strip_prefix("# ASF_"))
        .filter_map(|l| l.split_once('='))
        .map(|(name, value)| (format!("ASF_{name}"), value.to_owned()))
        .collect();
    let names: std::collections::BTreeSet<String> =
        example.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, declared, ".env.example vs src/config");
    // Every example line, uncommented as shown, is a valid setting.
    for (name, value) in &example {
        if let Err(e) = Config::from_source(&map(&[(name, value)])) {
            panic!(".env.example: {name}={value} does not parse: {e}");
        }
    }
}

#[test]
fn internal_hosts_rules() {
    assert!(parse(&[]).internal_hosts.is_empty());
    assert!(parse(&[(ASF_INTERNAL_HOSTS, " ")])
        .internal_hosts
        .is_empty());
    assert_eq!(
        parse(&[(ASF_INTERNAL_HOSTS, "asf, ASF.internal., my_app-1,asf")]).internal_hosts,
        ["asf", "asf.internal", "my_app-1"]
    );
    for bad in [
        "*",
        "*.internal",
        "asf:5006",
        " , ,",
        "a b",
        "-asf",
        "asf-",
        "a..b",
        "http://asf",
    ] {
        parse_err(ASF_INTERNAL_HOSTS, bad);
    }
    parse_err(ASF_INTERNAL_HOSTS, &"a".repeat(64));
    let summary = parse(&[(ASF_INTERNAL_HOSTS, "asf,b")]).summary();
    assert!(summary.contains(" internal_hosts=asf,b "), "{summary}");
    assert!(parse(&[]).summary().contains(" internal_hosts=unset "));
}
