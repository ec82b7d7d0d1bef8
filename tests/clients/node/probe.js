// Probe one ASF behaviour with socket.io-client and print what happened as JSON lines.
//
// Usage: node probe.js --url http://127.0.0.1:PORT --scenario NAME
//          [--transports websocket|default] [--stream ID] [--payload JSON] [--seconds N]
// Scenarios (same as probe.py):
//   no_stream_id   join_stream with {}; prints the `error` event (exit 0 once it came).
//   join           join_stream with --payload (default {"stream_id": --stream}); prints events
//                  until error, stream_error or end_of_stream (exit 0), else 4 after --seconds.
//   bad_namespace  connects to /nope; prints {"event": "connect_error", "data": ...} (exit 0).
//   idle           stays connected --seconds; prints {"event": "idle_done", "disconnected": B}
//                  (exit 0 if never disconnected, 6 otherwise).
//   root           also opens the root namespace `/` on the same connection (io(url));
//                  prints {"event": "root_connected"} or {"event": "root_connect_error"}, and
//                  runs no_stream_id on the audio namespace.
// Exit 2: the connection failed unexpectedly. Must not: judge the answers.
'use strict';

const { io, Manager } = require('socket.io-client');
const { NAMESPACE, parseArgs, emitLine, socketOptions, toBuffer, exitWith } = require('./common');

const args = parseArgs(process.argv.slice(2));
const scenarios = ['no_stream_id', 'join', 'bad_namespace', 'idle', 'root'];
if (!args.url || !scenarios.includes(args.scenario)) {
  process.stderr.write(`usage: probe.js --url URL --scenario ${scenarios.join('|')}\n`);
  process.exit(64);
}
const seconds = Number(args.seconds || 10);
const opts = socketOptions(args.transports || 'websocket');
let done = false;

function finish(socket, code) {
  if (done) return;
  done = true;
  socket.close();
  exitWith(code);
}

function runJoin(payload) {
  const socket = io(args.url + NAMESPACE, opts);
  setTimeout(() => finish(socket, 4), seconds * 1000).unref();
  socket.on('connect_error', (err) => {
    emitLine({ event: 'connect_error', data: { message: err.message, data: err.data ?? null } });
    finish(socket, 2);
  });
  socket.onAny((event, ...rest) => {
    const data = rest.length === 1 ? rest[0] : rest;
    if (event === 'audio_chunk') {
      const buf = toBuffer(data);
      emitLine({ event, len: buf ? buf.length : -1 });
      return;
    }
    emitLine({ event, data });
    if (event === 'connection_ack') {
      socket.emit('join_stream', payload);
    } else if (event === 'error' || event === 'stream_error'
      || (event === 'audio_control' && data && data.event === 'end_of_stream')) {
      finish(socket, 0);
    }
  });
}

function runBadNamespace() {
  const socket = io(`${args.url}/nope`, opts);
  setTimeout(() => finish(socket, 4), seconds * 1000).unref();
  socket.on('connect', () => emitLine({ event: 'connected', data: '/nope' }));
  socket.on('connect_error', (err) => {
    emitLine({ event: 'connect_error', data: { message: err.message, data: err.data ?? null } });
    finish(socket, 0);
  });
}

function runIdle() {
  const socket = io(args.url + NAMESPACE, opts);
  let disconnected = false;
  socket.on('connect_error', (err) => {
    emitLine({ event: 'connect_error', data: { message: err.message } });
    finish(socket, 2);
  });
  socket.on('connection_ack', (data) => emitLine({ event: 'connection_ack', data }));
  socket.on('disconnect', (reason) => {
    if (done) return;
    disconnected = true;
    emitLine({ event: 'disconnect', data: reason });
  });
  setTimeout(() => {
    disconnected = disconnected || !socket.connected;
    emitLine({ event: 'idle_done', disconnected });
    finish(socket, disconnected ? 6 : 0);
  }, seconds * 1000);
}

function runRoot() {
  // One Manager, so both namespaces share one Engine.IO connection as an app's would.
  const manager = new Manager(args.url, opts);
  const root = manager.socket('/');
  const audio = manager.socket(NAMESPACE);
  const seen = { root: false, error: false };
  const close = (code) => {
    if (done) return;
    done = true;
    manager.engine?.close();
    exitWith(code);
  };
  setTimeout(() => close(4), seconds * 1000).unref();
  const settle = () => { if (seen.root && seen.error) close(0); };
  root.on('connect', () => { emitLine({ event: 'root_connected' }); seen.root = true; settle(); });
  root.on('connect_error', (err) => {
    emitLine({ event: 'root_connect_error', data: { message: err.message } });
    close(2);
  });
  audio.on('connect_error', (err) => {
    emitLine({ event: 'connect_error', data: { message: err.message } });
    close(2);
  });
  audio.onAny((event, ...rest) => {
    const data = rest.length === 1 ? rest[0] : rest;
    emitLine({ event, data });
    if (event === 'connection_ack') audio.emit('join_stream', {});
    if (event === 'error') { seen.error = true; settle(); }
  });
}

if (args.scenario === 'no_stream_id') {
  runJoin({});
} else if (args.scenario === 'join') {
  runJoin(args.payload ? JSON.parse(args.payload) : { stream_id: args.stream });
} else if (args.scenario === 'bad_namespace') {
  runBadNamespace();
} else if (args.scenario === 'root') {
  runRoot();
} else {
  runIdle();
}
