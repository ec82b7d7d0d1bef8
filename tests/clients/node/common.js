// Shared helpers for ASF's socket.io-client test clients (listen.js, probe.js, ui_listen.js).
//
// Owns: argument parsing, JSON-line output, socket options.
// Must not: decide pass/fail of a test; the Rust tests read the printed lines and exit codes.
'use strict';

const NAMESPACE = '/api/v1/podcasts/stream';

/** Parses `--key value` pairs into an object (flags without value become true). */
function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    if (!key.startsWith('--')) {
      throw new Error(`unexpected argument ${key}`);
    }
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) {
      args[key.slice(2)] = true;
    } else {
      args[key.slice(2)] = next;
      i += 1;
    }
  }
  return args;
}

/** Prints one JSON object as a line on stdout. */
function emitLine(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** socket.io-client options for --transports (`default` = the library's own choice). */
function socketOptions(transports) {
  const opts = { reconnection: false, timeout: 10000, forceNew: true };
  if (transports && transports !== 'default') {
    opts.transports = String(transports).split(',').map((t) => t.trim()).filter(Boolean);
  }
  return opts;
}

/** Converts a received binary payload (Buffer, ArrayBuffer, typed array) to a Buffer. */
function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/** Writes stdout fully, then exits with `code`. */
function exitWith(code) {
  process.stdout.write('', () => process.exit(code));
}

module.exports = { NAMESPACE, parseArgs, emitLine, socketOptions, toBuffer, exitWith };
