"""Shared helpers for ASF's python-socketio test clients (listen.py, probe.py, ui_listen.py).

Owns: argument conventions, JSON-line output, and building a python-socketio Client.
Must not: decide pass/fail of a test; the Rust tests read the printed lines and exit codes.
"""
import json
import logging
import sys
import threading

import socketio

NAMESPACE = "/api/v1/podcasts/stream"
_print_lock = threading.Lock()


def emit_line(obj):
    """Print one JSON object as a line on stdout, flushed (thread-safe)."""
    with _print_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def transports_arg(value):
    """Map --transports to python-socketio's transports argument (None = library default)."""
    if value in (None, "", "default"):
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


def make_client(reconnection=False):
    """A python-socketio Client (without reconnection unless asked) whose handlers run in
    arrival order.

    python-socketio's threaded Client starts a new thread per Engine.IO message, so handlers
    for consecutive messages (and a binary event's header and attachment) may race; the
    maintainers suggest serializing it yourself (python-socketio issue #382). We dispatch
    messages on the read loop instead, which keeps the real protocol stack but makes the
    byte-exact audio checks deterministic.
    """
    # Engine.IO warnings (why a transport aborted) go to stderr, which the Rust tests print
    # when a client fails.
    eio_logger = logging.getLogger("asf-test-engineio")
    if not eio_logger.handlers:
        eio_logger.addHandler(logging.StreamHandler(sys.stderr))
    eio_logger.setLevel(logging.WARNING)
    sio = socketio.Client(reconnection=reconnection, engineio_logger=eio_logger)
    eio = getattr(sio, "eio", None)
    original = getattr(eio, "_trigger_event", None)
    if original is not None:
        def ordered(event, *args, **kwargs):
            if event == "message":
                kwargs["run_async"] = False
            return original(event, *args, **kwargs)

        eio._trigger_event = ordered
    return sio


def run_until_done(sio, args, namespaces, done, state, out):
    """Connect `sio` to `args.url` on `namespaces`, wait for `done` (at most `args.timeout`),
    close `out` and the client; return the exit code (2 when the connection failed, else
    `state["code"]`)."""
    try:
        sio.connect(
            args.url,
            namespaces=namespaces,
            transports=transports_arg(args.transports),
            wait_timeout=10,
        )
    except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
        emit_line({"event": "connect_error", "data": str(exc)})
        out.close()
        return 2
    if not done.wait(args.timeout):
        emit_line({"event": "timeout", "data": args.timeout})
    code = state["code"]
    out.flush()
    out.close()
    try:
        sio.disconnect()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
    return code
