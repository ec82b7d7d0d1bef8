//! Encodes a [`Snapshot`] in the Prometheus text format (0.0.4) with `prometheus-client`:
//! a custom collector over the snapshot's numbers, registered in a registry built per
//! scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Snapshot, FIRST_CHUNK_BUCKETS};

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Result = std::result::Result<(), std::fmt::Error>;

/// The exposition of `snapshot`: every family, with `asf_` names (process figures under the
/// conventional `process_` names, as the official clients' process collectors use).
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot)));
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// The collector: one scrape's numbers.
#[derive(Debug)]
struct Scrape(Snapshot);

/// Encodes one family of samples, one per label set. A counter's name gets `_total`
/// from the encoder.
fn family<L: EncodeLabelSet, V>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, V)>,
) -> Result
where
    V: EncodeGaugeValue + EncodeCounterValue,
{
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let mut sample = metric.encode_family(&labels)?;
        if kind == MetricType::Counter {
            sample.encode_counter::<NoLabelSet, V, f64>(&value, None)?;
        } else {
            sample.encode_gauge(&value)?;
        }
    }
    Ok(())
}

/// Encodes one sample without labels.
fn single<V: EncodeGaugeValue + EncodeCounterValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    value: V,
) -> Result {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    if kind == MetricType::Counter {
        metric.encode_counter::<NoLabelSet, V, f64>(&value, None)
    } else {
        metric.encode_gauge(&value)
    }
}

use MetricType::{Counter, Gauge};

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result {
        let s = &self.0;
        let e = &mut enc;
        family(
            e,
            "asf_connections",
            "Open TCP connections by transport (polling = HTTP connections, the internal endpoints' included)",
            Gauge,
            [
                ([("transport", "polling")], s.connections_polling),
                ([("transport", "websocket")], s.connections_websocket),
            ],
        )?;
        single(
            e,
            "asf_engineio_sessions",
            "Live Engine.IO sessions",
            Gauge,
            s.engineio_sessions,
        )?;
        family(
            e,
            "asf_namespace_sockets",
            "Connected Socket.IO sockets by namespace",
            Gauge,
            s.namespace_sockets
                .iter()
                .map(|(ns, n)| ([("namespace", ns.as_str())], *n)),
        )?;
        single(
            e,
            "asf_listeners",
            "Listeners attached to a stream",
            Gauge,
            s.listeners,
        )?;
        family(
            e,
            "asf_streams",
            "Streams by state: active (a file streamed to listeners), waiting (an id clients joined before its notify), live (still being written)",
            Gauge,
            [
                ([("state", "active")], s.streams_active),
                ([("state", "waiting")], s.streams_waiting),
                ([("state", "live")], s.streams_live),
            ],
        )?;
        single(
            e,
            "asf_registered_streams",
            "Registered stream ids",
            Gauge,
            s.registered_streams,
        )?;
        family(
            e,
            "asf_registry_backend_up",
            "1 when the stream registry's backend answers, by backend",
            Gauge,
            s.registry
                .iter()
                .map(|b| ([("backend", b.backend)], u64::from(b.up))),
        )?;
        single(
            e,
            "asf_audio_sent_bytes",
            "Audio bytes handed to listeners' connections",
            Counter,
            s.audio.bytes,
        )?;
        single(
            e,
            "asf_audio_sent_chunks",
            "Audio chunks handed to listeners' connections",
            Counter,
            s.audio.chunks,
        )?;
        single(
            e,
            "asf_audio_sendfile_bytes",
            "Audio bytes sent from the page cache with sendfile (ASF_SENDFILE)",
            Counter,
            s.audio.sendfile_bytes,
        )?;
        single(
            e,
            "asf_disk_read_bytes",
            "Bytes read from audio files",
            Counter,
            s.disk_read_bytes,
        )?;
        single(
            e,
            "asf_disk_reads",
            "Block reads from audio files",
            Counter,
            s.disk_reads,
        )?;
        family(
            e,
            "asf_buffer_pool_bytes",
            "Bytes of pooled read buffers, in use or idle",
            Gauge,
            [
                ([("state", "in_use")], s.buffer_pool_in_use_bytes),
                ([("state", "idle")], s.buffer_pool_idle_bytes),
            ],
        )?;
        single(
            e,
            "asf_stream_cache_bytes",
            "Bytes of file blocks held by stream sessions",
            Gauge,
            s.stream_cache_bytes,
        )?;
        family(
            e,
            "asf_joins",
            "join_stream requests by result",
            Counter,
            s.joins.iter().map(|(r, n)| ([("result", r.label())], *n)),
        )?;
        family(
            e,
            "asf_listener_ends",
            "Listeners that stopped receiving a stream, by reason",
            Counter,
            s.ends.iter().map(|(r, n)| ([("reason", r.label())], *n)),
        )?;
        family(
            e,
            "asf_notifies",
            "Notify requests by HTTP status",
            Counter,
            s.notifies
                .iter()
                .map(|(c, n)| ([("status", c.to_string())], *n)),
        )?;
        family(
            e,
            "asf_http_requests",
            "HTTP requests by route and status",
            Counter,
            s.http
                .iter()
                .map(|(r, c, n)| ([("route", r.to_string()), ("status", c.to_string())], *n)),
        )?;
        {
            let a = &s.audio;
            let buckets: Vec<(f64, u64)> = FIRST_CHUNK_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(a.first_chunk_buckets.iter().copied())
                .collect();
            let mut metric = e.encode_descriptor(
                "asf_join_first_chunk_seconds",
                "Seconds from a join_stream to its first audio chunk handed to the connection",
                None,
                MetricType::Histogram,
            )?;
            metric.encode_histogram::<NoLabelSet>(
                a.first_chunk_sum,
                a.first_chunk_count,
                &buckets,
                None,
            )?;
        }
        if let Some(p) = &s.process {
            single(
                e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Gauge,
                p.resident_memory_bytes,
            )?;
            single(
                e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Gauge,
                p.virtual_memory_bytes,
            )?;
            single(
                e,
                "process_open_fds",
                "Number of open file descriptors",
                Gauge,
                p.open_fds,
            )?;
            single(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors",
                Gauge,
                p.max_fds,
            )?;
            single(
                e,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                Counter,
                p.cpu_seconds,
            )?;
            single(
                e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                Gauge,
                p.start_time_seconds,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EndReason, JoinResult, ProcessStats, WorkerTotals};

    #[test]
    fn families_are_named_and_typed() {
        let text = render(Snapshot {
            connections_polling: 2,
            namespace_sockets: vec![("/api/v1/podcasts/stream".into(), 3)],
            joins: vec![(JoinResult::NotFound, 1)],
            ends: vec![(EndReason::LagLimit, 2)],
            notifies: vec![(200, 4)],
            http: vec![("notify", 200, 4)],
            audio: WorkerTotals {
                bytes: 8192,
                chunks: 2,
                sendfile_bytes: 4096,
                first_chunk_buckets: vec![1; FIRST_CHUNK_BUCKETS.len() + 1],
                first_chunk_sum: 0.5,
                first_chunk_count: 15,
            },
            process: Some(ProcessStats::default()),
            ..Snapshot::default()
        });
        for line in [
            "# TYPE asf_connections gauge",
            "asf_connections{transport=\"polling\"} 2",
            "asf_namespace_sockets{namespace=\"/api/v1/podcasts/stream\"} 3",
            "# TYPE asf_audio_sent_bytes_total counter",
            "asf_audio_sent_bytes_total 8192",
            "asf_audio_sendfile_bytes_total 4096",
            "asf_joins_total{result=\"not_found\"} 1",
            "asf_listener_ends_total{reason=\"lag_limit\"} 2",
            "asf_notifies_total{status=\"200\"} 4",
            "asf_http_requests_total{route=\"notify\",status=\"200\"} 4",
            "# TYPE asf_join_first_chunk_seconds histogram",
            "asf_join_first_chunk_seconds_bucket{le=\"0.0005\"} 1",
            "asf_join_first_chunk_seconds_bucket{le=\"+Inf\"} 15",
            "asf_join_first_chunk_seconds_count 15",
            "process_cpu_seconds_total 0.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }
}
