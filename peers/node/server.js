// A bench-only reference server: the part of the ASF contract that asf-bench drives, written
// plainly on npm socket.io 4.x, as a Node user would write it.
//
// - POST /asf/internal/notify_new_audio {stream_id, filepath} registers a file
//   (Authorization: Bearer checked when ASF_INTERNAL_TOKEN is set).
// - Namespace /api/v1/podcasts/stream: connection_ack on connect; join_stream
//   {stream_id, offset?} answers stream_status, audio_control start_of_stream, the file from
//   offset as binary audio_chunk events of ASF_CHUNK_SIZE bytes (an fs read stream), chunk k
//   no earlier than k x ASF_STREAM_SLEEP_INTERVAL, then audio_control end_of_stream;
//   stream_error for an unknown id or an unreadable file; leave_stream stops.
//   socket.io buffers without bound, so a stream waits for the connection's 'drain' once 128
//   packets are queued (socketioxide's default buffer), as a careful user would.
//
// Settings: ASF_HOST, ASF_PORT (0: any), ASF_CHUNK_SIZE, ASF_STREAM_SLEEP_INTERVAL,
// ASF_INTERNAL_TOKEN. Prints `peer listening on ADDR` once it listens. Not hardened (no path
// confinement, no rate limits): it exists to be measured beside ASF.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const { Server } = require("socket.io");

const NAMESPACE = "/api/v1/podcasts/stream";
const MAX_QUEUED = 128;

function setting(name, fallback) {
  const v = (process.env[name] || "").trim();
  if (v === "") return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`${name}=${JSON.stringify(v)} is not valid`);
    process.exit(2);
  }
  return n;
}

const host = (process.env.ASF_HOST || "127.0.0.1").trim();
const port = setting("ASF_PORT", 5006);
const chunkSize = Math.max(1, Math.floor(setting("ASF_CHUNK_SIZE", 4096)));
const intervalMs = setting("ASF_STREAM_SLEEP_INTERVAL", 0.01) * 1000;
const token = process.env.ASF_INTERNAL_TOKEN || "";

const streams = new Map();

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

function onRequest(req, res) {
  if (req.method !== "POST" || req.url !== "/asf/internal/notify_new_audio") {
    return reply(res, 404, { error: "Not found" });
  }
  if (token && req.headers.authorization !== `Bearer ${token}`) {
    return reply(res, 401, { error: "Unauthorized" });
  }
  let raw = "";
  req.setEncoding("utf8");
  req.on("data", (part) => (raw += part));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(raw);
    } catch {
      return reply(res, 400, { error: "The body is not valid JSON" });
    }
    const missing = ["stream_id", "filepath"].filter(
      (k) => typeof (body && body[k]) !== "string",
    );
    if (missing.length) {
      return reply(res, 400, { error: `Missing required parameters: ${missing.join(", ")}` });
    }
    streams.set(body.stream_id, body.filepath);
    reply(res, 200, { message: "Notification received successfully", stream_id: body.stream_id });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves once the connection's queue is handed to the socket, or it closed.
function drained(conn) {
  return new Promise((resolve) => {
    const done = () => {
      conn.off("drain", done);
      conn.off("close", done);
      resolve();
    };
    conn.on("drain", done);
    conn.on("close", done);
  });
}

async function play(socket, playing, id, path, offset) {
  let total;
  try {
    total = (await fs.promises.stat(path)).size;
    if (offset > total) throw new Error(`offset ${offset} is past the end (${total} bytes)`);
  } catch (e) {
    console.error(`join ${JSON.stringify(id)}: ${path}: ${e.message}`);
    socket.emit("stream_error", { message: "Audio file unavailable for this stream." });
    return;
  }
  socket.emit("stream_status", {
    status: "joined",
    stream_id: id,
    message: `Successfully joined stream ${id}. Preparing to stream audio.`,
  });
  socket.emit("audio_control", {
    event: "start_of_stream",
    stream_id: id,
    timestamp: Date.now() / 1000,
    total_bytes: total,
    offset,
  });
  const started = performance.now();
  let sent = 0;
  let k = 0;
  try {
    const file = fs.createReadStream(path, { start: offset, highWaterMark: chunkSize });
    for await (const chunk of file) {
      if (playing.stopped) return;
      if (intervalMs > 0) {
        const wait = started + k * intervalMs - performance.now();
        if (wait > 0) await sleep(wait);
      }
      if (socket.conn.writeBuffer.length >= MAX_QUEUED) await drained(socket.conn);
      if (playing.stopped || !socket.connected) return;
      socket.emit("audio_chunk", chunk);
      sent += chunk.length;
      k += 1;
    }
  } catch (e) {
    if (!playing.stopped) {
      socket.emit("stream_error", { message: `Error while streaming audio: ${e.message}`, stream_id: id });
    }
    return;
  }
  if (playing.stopped) return;
  socket.emit("audio_control", {
    event: "end_of_stream",
    stream_id: id,
    timestamp: Date.now() / 1000,
    bytes_sent: sent,
  });
}

function stop(socket) {
  if (socket.data.playing) socket.data.playing.stopped = true;
  socket.data.playing = null;
}

const server = http.createServer(onRequest);
const io = new Server(server, { serveClient: false });

io.of(NAMESPACE).on("connection", (socket) => {
  socket.emit("connection_ack", {
    message: "Connected to ASF. Please send join_stream with your stream_id.",
  });
  socket.on("join_stream", (args) => {
    stop(socket);
    const id = args && typeof args.stream_id === "string" ? args.stream_id : "";
    if (!id) {
      socket.emit("error", { message: "stream_id is required for join_stream." });
      return;
    }
    const offset = args.offset == null ? 0 : args.offset;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      socket.emit("error", { message: "offset must be a non-negative whole number of bytes." });
      return;
    }
    const path = streams.get(id);
    if (path === undefined) {
      socket.emit("stream_error", { message: "Audio stream ID not found or not yet processed." });
      return;
    }
    const playing = { stopped: false };
    socket.data.playing = playing;
    play(socket, playing, id, path, offset);
  });
  socket.on("leave_stream", () => stop(socket));
  socket.on("disconnect", () => stop(socket));
});

server.listen(port, host, () => {
  const a = server.address();
  console.log(`peer listening on ${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`);
});
