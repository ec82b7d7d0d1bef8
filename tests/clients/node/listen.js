// Listen to one ASF stream with socket.io-client and save its audio.
//
// Usage: node listen.js --url http://127.0.0.1:PORT --stream ID
//          [--transports websocket|default] [--offset N] [--protocols A,B] --out FILE
//          [--timeout SECONDS]
// Prints every event as one JSON line ({"event": name, "data": ...}; audio chunks only as
// {"event": "audio_chunk", "len": N, "at_ms": T}, T the milliseconds from just before the
// join was emitted to the chunk's arrival), joins on connection_ack, writes all audio to FILE.
// Exit codes: 0 after end_of_stream, 2 connection failed, 3 stream_error, 4 timeout,
// 5 disconnected before end_of_stream. Must not: judge the audio; the Rust test compares it.
'use strict';

const fs = require('fs');
const { io } = require('socket.io-client');
const { NAMESPACE, parseArgs, emitLine, socketOptions, toBuffer, exitWith } = require('./common');

const args = parseArgs(process.argv.slice(2));
if (!args.url || !args.stream || !args.out) {
  process.stderr.write('usage: listen.js --url URL --stream ID --out FILE\n');
  process.exit(64);
}
const timeoutMs = Number(args.timeout || 30) * 1000;
const chunks = [];
let finished = false;
let joinedAt = null;

const options = socketOptions(args.transports || 'websocket');
if (args.protocols) {
  // WebSocket subprotocols to ask for; the ws client fails the handshake if none is answered.
  options.protocols = String(args.protocols).split(',');
}
const socket = io(args.url + NAMESPACE, options);

function finish(code) {
  if (finished) return;
  finished = true;
  fs.writeFileSync(args.out, Buffer.concat(chunks));
  socket.close();
  exitWith(code);
}

const timer = setTimeout(() => {
  emitLine({ event: 'timeout', data: timeoutMs / 1000 });
  finish(4);
}, timeoutMs);
timer.unref();

socket.on('connect_error', (err) => {
  emitLine({ event: 'connect_error', data: { message: err.message, data: err.data ?? null } });
  finish(2);
});

socket.on('disconnect', (reason) => {
  if (finished) return;
  emitLine({ event: 'disconnect', data: reason });
  finish(5);
});

socket.onAny((event, ...rest) => {
  const data = rest.length === 1 ? rest[0] : rest;
  if (event === 'audio_chunk') {
    const buf = toBuffer(data);
    if (buf) {
      chunks.push(Buffer.from(buf));
      const at = joinedAt === null ? null : performance.now() - joinedAt;
      emitLine({ event, len: buf.length, at_ms: at });
    } else {
      emitLine({ event, len: -1, type: typeof data });
    }
    return;
  }
  emitLine({ event, data });
  if (event === 'connection_ack') {
    const payload = { stream_id: args.stream };
    if (args.offset !== undefined) payload.offset = Number(args.offset);
    joinedAt = performance.now();
    socket.emit('join_stream', payload);
  } else if (event === 'audio_control' && data && data.event === 'end_of_stream') {
    finish(0);
  } else if (event === 'stream_error') {
    finish(3);
  }
});
