// ASF browser test page: listen to one stream with the official socket.io-client browser
// bundle, the way a web frontend would, and report what happened in window.asfReport.
//
// Query: asf (ASF's base URL, another origin than this page), stream (the stream id),
// transports (`default`: polling then upgrade; or a comma-separated list such as `websocket`),
// beacon (`1`: announce milestones to the page's site, see `mark`).
// The page joins the stream on connection_ack, appends every audio_chunk to a MediaSource
// 'audio/mpeg' SourceBuffer behind an <audio> element that plays as soon as it can, and at
// end_of_stream hashes all received bytes with crypto.subtle (SHA-256) and decodes them with
// decodeAudioData. Milestones are recorded once each, in the order they happened, so the test
// can tell that playback started before end_of_stream.
// Must not: judge anything. The Rust test (tests/browser/) compares the report with the file.
'use strict';

(function main() {
  const NAMESPACE = '/api/v1/podcasts/stream';
  // The page gives up and reports after this long (the driver waits a little longer).
  const DEADLINE_MS = 25000;
  // After end_of_stream, how long to wait for the MediaSource to take the last bytes.
  const DRAIN_MS = 5000;

  const params = new URLSearchParams(window.location.search);
  const asf = params.get('asf');
  const streamId = params.get('stream');
  const transports = params.get('transports') || 'default';
  const statusLine = document.getElementById('status');
  const audio = document.getElementById('player');

  const report = {
    origin: window.location.origin,
    bundle_loaded: typeof window.io === 'function',
    milestones: [],
    chunks: 0,
    bytes: 0,
    // Bytes received when each milestone happened.
    bytes_at: {},
    errors: [],
  };
  const seen = new Set();
  const received = [];
  let finished = false;
  let socket = null;

  // With `beacon=1`, each milestone is also requested from this page's own site
  // (/milestone/<name>), so that a test can act on it while the page runs (a live test
  // writes the rest of its file only once playback has started).
  const beacon = params.get('beacon') === '1';

  function mark(name) {
    if (!seen.has(name)) {
      seen.add(name);
      report.milestones.push(name);
      report.bytes_at[name] = report.bytes;
      if (beacon) {
        fetch(`/milestone/${name}`).catch(() => {});
      }
    }
  }

  function fail(what) {
    report.errors.push(String(what));
  }

  function finish() {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    report.current_time = audio.currentTime;
    statusLine.textContent = JSON.stringify(report);
    window.asfReport = report;
  }

  const deadline = setTimeout(() => {
    report.timed_out = true;
    if (socket) socket.close();
    finish();
  }, DEADLINE_MS);

  // ---- playback: MediaSource with one 'audio/mpeg' SourceBuffer -------------------------
  const pending = [];
  let sourceBuffer = null;
  let streamEnded = false;
  let mediaEnded = null;
  const mediaEndedPromise = new Promise((resolve) => { mediaEnded = resolve; });
  const media = new MediaSource();
  report.mse_supported = MediaSource.isTypeSupported('audio/mpeg');

  function pump() {
    if (!sourceBuffer || sourceBuffer.updating) return;
    if (pending.length > 0) {
      try {
        sourceBuffer.appendBuffer(pending.shift());
      } catch (e) {
        fail(`appendBuffer: ${e.name}: ${e.message}`);
      }
      return;
    }
    if (streamEnded && media.readyState === 'open') {
      media.endOfStream();
      const ranges = sourceBuffer.buffered;
      report.buffered_seconds = ranges.length > 0 ? ranges.end(ranges.length - 1) : 0;
      mark('media_ended');
      mediaEnded();
    }
  }

  media.addEventListener('sourceopen', () => {
    try {
      sourceBuffer = media.addSourceBuffer('audio/mpeg');
    } catch (e) {
      fail(`addSourceBuffer: ${e.name}: ${e.message}`);
      return;
    }
    sourceBuffer.addEventListener('updateend', pump);
    sourceBuffer.addEventListener('error', () => fail('SourceBuffer error event'));
    pump();
  });
  audio.addEventListener('playing', () => mark('playing'));
  audio.addEventListener('timeupdate', () => {
    if (audio.currentTime > 0) mark('playback_advanced');
  });
  audio.addEventListener('error', () => {
    fail(`audio element error: ${audio.error ? audio.error.message || audio.error.code : '?'}`);
  });
  audio.src = URL.createObjectURL(media);
  audio.play().catch((e) => fail(`play(): ${e.name}: ${e.message}`));

  // ---- the end: hash and decode everything received ---------------------------------------
  function concat(buffers) {
    const total = buffers.reduce((n, b) => n + b.byteLength, 0);
    const all = new Uint8Array(total);
    let at = 0;
    for (const b of buffers) {
      all.set(new Uint8Array(b), at);
      at += b.byteLength;
    }
    return all;
  }

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function endOfStream() {
    streamEnded = true;
    pump();
    socket.close();
    try {
      const all = concat(received);
      report.sha256 = hex(await crypto.subtle.digest('SHA-256', all));
      const context = new OfflineAudioContext(1, 1, 44100);
      // decodeAudioData detaches the buffer it is given: hand it a copy.
      const decoded = await context.decodeAudioData(all.slice().buffer);
      const samples = decoded.getChannelData(0);
      let peak = 0;
      for (let i = 0; i < samples.length; i += 1) peak = Math.max(peak, Math.abs(samples[i]));
      report.decoded = {
        duration: decoded.duration,
        channels: decoded.numberOfChannels,
        peak,
      };
    } catch (e) {
      fail(`hash/decode: ${e.name}: ${e.message}`);
    }
    let drainTimer = null;
    await Promise.race([
      mediaEndedPromise,
      new Promise((resolve) => { drainTimer = setTimeout(resolve, DRAIN_MS); }),
    ]);
    clearTimeout(drainTimer);
    finish();
  }

  // ---- Socket.IO ----------------------------------------------------------------------------
  if (!report.bundle_loaded) {
    fail('the socket.io-client bundle did not load');
    finish();
    return;
  }
  const options = { reconnection: false, timeout: 10000 };
  if (transports !== 'default') options.transports = transports.split(',');
  socket = window.io(asf + NAMESPACE, options);

  socket.io.on('open', () => {
    report.first_transport = socket.io.engine.transport.name;
    socket.io.engine.on('upgrade', (transport) => {
      report.upgraded_to = transport.name;
      mark('upgrade');
    });
  });
  socket.on('connect', () => mark('connect'));
  socket.on('connect_error', (err) => {
    mark('connect_error');
    report.connect_error = err.message;
    finish();
  });
  socket.on('disconnect', (reason) => {
    if (seen.has('end_of_stream')) return;
    mark('disconnect');
    report.disconnect = reason;
    finish();
  });
  socket.on('connection_ack', (data) => {
    mark('connection_ack');
    report.connection_ack = data;
    socket.emit('join_stream', { stream_id: streamId });
  });
  socket.on('stream_status', (data) => {
    mark('stream_status');
    report.stream_status = data;
  });
  socket.on('audio_control', (data) => {
    const name = data && data.event;
    if (name === 'start_of_stream') {
      report.start_of_stream = data;
      mark('start_of_stream');
    } else if (name === 'end_of_stream') {
      mark('end_of_stream');
      endOfStream();
    } else {
      fail(`unexpected audio_control ${JSON.stringify(data)}`);
    }
  });
  socket.on('audio_chunk', (data) => {
    if (!(data instanceof ArrayBuffer)) {
      fail(`audio_chunk payload is ${Object.prototype.toString.call(data)}, not an ArrayBuffer`);
      return;
    }
    mark('first_chunk');
    received.push(data);
    pending.push(data);
    report.chunks += 1;
    report.bytes += data.byteLength;
    pump();
  });
  for (const name of ['stream_error', 'error']) {
    socket.on(name, (data) => {
      mark(name);
      report[name] = data;
      socket.close();
      finish();
    });
  }
}());
