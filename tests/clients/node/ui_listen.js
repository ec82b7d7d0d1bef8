// Subscribe to UI updates and listen to one ASF stream, over ONE socket.io-client connection
// (a Manager with two namespace sockets), and save the audio.
//
// Usage: node ui_listen.js --url http://127.0.0.1:PORT --stream ID --ids ID[,ID...]
//          --expect N --out FILE [--ui-ns /ui_updates] [--transports websocket|default]
//          [--timeout SECONDS]
// Prints every event as one JSON line ({"ns": "audio"|"ui", "event": name, "data": ...};
// audio chunks only as {"ns": "audio", "event": "audio_chunk", "len": N}). Subscribes to each
// id on ui_connection_ack; once every id is confirmed (subscribed_ui_updates) and the audio
// namespace acknowledged, prints {"ns": "ui", "event": "subscribed_all"} and joins the stream.
// Exits once end_of_stream came and N UI updates (events other than the namespace's own) did.
// Exit codes: 0 done, 2 connection failed, 3 stream_error or ui_error, 4 timeout,
// 5 disconnected. Must not: judge what came; the Rust test does.
'use strict';

const fs = require('fs');
const { Manager } = require('socket.io-client');
const { NAMESPACE, parseArgs, emitLine, socketOptions, toBuffer, exitWith } = require('./common');

const args = parseArgs(process.argv.slice(2));
if (!args.url || !args.stream || !args.ids || args.expect === undefined || !args.out) {
  process.stderr.write('usage: ui_listen.js --url URL --stream ID --ids A,B --expect N --out FILE\n');
  process.exit(64);
}
const uiNs = args['ui-ns'] || '/ui_updates';
const ids = String(args.ids).split(',');
const expect = Number(args.expect);
const timeoutMs = Number(args.timeout || 30) * 1000;
const OWN_EVENTS = ['ui_connection_ack', 'subscribed_ui_updates', 'ui_error'];
const chunks = [];
let finished = false;
let audioAcked = false;
let subscribed = 0;
let joined = false;
let ended = false;
let updates = 0;

const manager = new Manager(args.url, socketOptions(args.transports || 'websocket'));
const audio = manager.socket(NAMESPACE);
const ui = manager.socket(uiNs);

function finish(code) {
  if (finished) return;
  finished = true;
  fs.writeFileSync(args.out, Buffer.concat(chunks));
  audio.close();
  ui.close();
  exitWith(code);
}

function maybeDone() {
  if (ended && updates >= expect) finish(0);
}

function maybeJoin() {
  if (joined || !audioAcked || subscribed < ids.length) return;
  joined = true;
  emitLine({ ns: 'ui', event: 'subscribed_all' });
  audio.emit('join_stream', { stream_id: args.stream });
}

const timer = setTimeout(() => {
  emitLine({ event: 'timeout', data: timeoutMs / 1000 });
  finish(4);
}, timeoutMs);
timer.unref();

for (const [name, socket] of [['audio', audio], ['ui', ui]]) {
  socket.on('connect_error', (err) => {
    emitLine({ ns: name, event: 'connect_error', data: { message: err.message } });
    finish(2);
  });
  socket.on('disconnect', (reason) => {
    if (finished) return;
    emitLine({ ns: name, event: 'disconnect', data: reason });
    finish(5);
  });
}

audio.onAny((event, ...rest) => {
  const data = rest.length === 1 ? rest[0] : rest;
  if (event === 'audio_chunk') {
    const buf = toBuffer(data);
    if (buf) chunks.push(Buffer.from(buf));
    emitLine({ ns: 'audio', event, len: buf ? buf.length : -1 });
    return;
  }
  emitLine({ ns: 'audio', event, data });
  if (event === 'connection_ack') {
    audioAcked = true;
    maybeJoin();
  } else if (event === 'audio_control' && data && data.event === 'end_of_stream') {
    ended = true;
    maybeDone();
  } else if (event === 'stream_error') {
    finish(3);
  }
});

ui.onAny((event, ...rest) => {
  const data = rest.length === 1 ? rest[0] : rest;
  emitLine({ ns: 'ui', event, data });
  if (event === 'ui_connection_ack') {
    for (const id of ids) ui.emit('subscribe_to_ui_updates', { client_id: id });
  } else if (event === 'subscribed_ui_updates') {
    subscribed += 1;
    maybeJoin();
  } else if (event === 'ui_error') {
    finish(3);
  } else if (!OWN_EVENTS.includes(event)) {
    updates += 1;
    maybeDone();
  }
});
