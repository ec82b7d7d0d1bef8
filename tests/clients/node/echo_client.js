// Drive the echo example (examples/echo.rs) with socket.io-client and print what came back.
//
// Usage: node echo_client.js --url http://127.0.0.1:PORT --namespace NS [--auth JSON]
//          [--transports websocket|default] --messages JSON [--seconds N]
// Same contract as echo_client.py: --messages is a JSON list of {"event": "message" |
// "message-with-ack", "args": [...]}, {"$bin": BASE64} arguments are sent as Buffers. Prints
// {"event": "auth", "data": ...}, then per message {"event": "reply", "kind": "message-back" |
// "ack", "args": [...]} (binaries as {"$bin": BASE64}), then {"event": "done"}.
// Exit 0: done; 2: connection failed; 4: an awaited answer did not come in time.
// Owns: the client side of the echo conversation. Must not: judge the answers.
'use strict';

const { io } = require('socket.io-client');
const { parseArgs, emitLine, socketOptions, toBuffer, exitWith } = require('./common');

const args = parseArgs(process.argv.slice(2));
if (!args.url) {
  process.stderr.write('usage: echo_client.js --url URL --namespace NS --messages JSON\n');
  process.exit(64);
}
const ns = args.namespace || '/';
const seconds = Number(args.seconds || 10);
const messages = JSON.parse(args.messages || '[]');
const opts = socketOptions(args.transports || 'websocket');
if (args.auth) opts.auth = JSON.parse(args.auth);

/** Command-line JSON -> values to send, {"$bin": b64} -> Buffer. */
function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === '$bin') return Buffer.from(v.$bin, 'base64');
    return Object.fromEntries(keys.map((k) => [k, decode(v[k])]));
  }
  return v;
}

/** Received values -> printable JSON, binaries -> {"$bin": b64}. */
function encode(v) {
  const buf = toBuffer(v);
  if (buf) return { $bin: buf.toString('base64') };
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).map((k) => [k, encode(v[k])]));
  }
  return v;
}

const url = ns === '/' ? `${args.url}/` : args.url + ns;
const socket = io(url, opts);
const inbox = [];
let waiter = null;
let finished = false;

function finish(code) {
  if (finished) return;
  finished = true;
  socket.close();
  exitWith(code);
}

function push(kind, data) {
  inbox.push([kind, data]);
  if (waiter) {
    const w = waiter;
    waiter = null;
    w();
  }
}

/** Resolves with the next inbox item, or null after `seconds`. */
function next(kind) {
  return new Promise((resolve) => {
    const take = () => {
      const [gotKind, data] = inbox.shift();
      if (gotKind !== kind) {
        emitLine({ event: 'unexpected', kind: gotKind, args: encode(data) });
        resolve(null);
      } else {
        resolve(data);
      }
    };
    if (inbox.length > 0) {
      take();
      return;
    }
    const timer = setTimeout(() => {
      waiter = null;
      emitLine({ event: 'timeout', data: kind });
      resolve(null);
    }, seconds * 1000);
    waiter = () => {
      clearTimeout(timer);
      take();
    };
  });
}

socket.on('connect_error', (err) => {
  emitLine({ event: 'connect_error', data: { message: err.message } });
  finish(2);
});
socket.on('auth', (...data) => push('auth', data));
socket.on('message-back', (...data) => push('message-back', data));

async function converse() {
  const auth = await next('auth');
  if (auth === null) return 4;
  emitLine({ event: 'auth', data: encode(auth.length === 1 ? auth[0] : auth) });
  for (const msg of messages) {
    const sent = decode(msg.args || []);
    let kind;
    if (msg.event === 'message-with-ack') {
      kind = 'ack';
      socket.emit('message-with-ack', ...sent, (...ackArgs) => push('ack', ackArgs));
    } else {
      kind = 'message-back';
      socket.emit(msg.event, ...sent);
    }
    // eslint-disable-next-line no-await-in-loop
    const data = await next(kind);
    if (data === null) return 4;
    emitLine({ event: 'reply', kind, args: encode(data) });
  }
  emitLine({ event: 'done' });
  return 0;
}

converse().then(finish, (err) => {
  emitLine({ event: 'error', data: String(err) });
  finish(4);
});
