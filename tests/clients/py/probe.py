"""Probe one ASF behaviour with python-socketio and print what happened as JSON lines.

Usage: probe.py --url http://127.0.0.1:PORT --scenario NAME [--transports websocket|default]
                [--stream ID] [--payload JSON] [--seconds N]

Scenarios:
  no_stream_id   join_stream with {}; prints the `error` event (exit 0 once it came).
  join           join_stream with --payload (default {"stream_id": --stream}); prints events
                 until error, stream_error or end_of_stream (exit 0), else 4 after --seconds.
  bad_namespace  connects to /nope; prints {"event": "connect_error", "data": ...} (exit 0).
  idle           stays connected --seconds; prints {"event": "idle_done", "disconnected": B}
                 (exit 0 if never disconnected, 6 otherwise).
  root           as a client with a handler on the root namespace `/` too: connects without
                 naming namespaces (python-socketio then connects every namespace it has
                 handlers for), prints {"event": "root_connected"}, and runs no_stream_id on
                 the audio namespace (exit 0 once its `error` came).
Exit 2: the connection itself failed (unexpectedly). Exit 4: the awaited event never came.
Must not: judge the answers; the Rust test compares the printed lines.
"""
import argparse
import json
import sys
import threading
import time

from common import NAMESPACE, emit_line, make_client, transports_arg

TERMINAL = ("error", "stream_error")


def connect(sio, args, namespace):
    sio.connect(
        args.url,
        namespaces=None if namespace is None else [namespace],
        transports=transports_arg(args.transports),
        wait_timeout=10,
    )


def scenario_join(sio, args, payload, namespace=NAMESPACE):
    done = threading.Event()

    @sio.on("connection_ack", namespace=NAMESPACE)
    def on_ack(data=None):
        emit_line({"event": "connection_ack", "data": data})
        sio.emit("join_stream", payload, namespace=NAMESPACE)

    @sio.on("audio_chunk", namespace=NAMESPACE)
    def on_chunk(data=None):
        size = len(data) if isinstance(data, (bytes, bytearray)) else -1
        emit_line({"event": "audio_chunk", "len": size})

    @sio.on("*", namespace=NAMESPACE)
    def on_any(event, *data):
        value = data[0] if len(data) == 1 else list(data)
        emit_line({"event": event, "data": value})
        end = isinstance(value, dict) and value.get("event") == "end_of_stream"
        if event in TERMINAL or end:
            done.set()

    connect(sio, args, namespace)
    return 0 if done.wait(args.seconds) else 4


def scenario_root(sio, args):
    @sio.on("connect")
    def on_root_connect():
        emit_line({"event": "root_connected"})

    return scenario_join(sio, args, {}, namespace=None)


def scenario_bad_namespace(sio, args):
    got = threading.Event()

    @sio.on("connect_error", namespace="/nope")
    def on_error(data=None):
        emit_line({"event": "connect_error", "data": data})
        got.set()

    try:
        connect(sio, args, "/nope")
        emit_line({"event": "connected", "data": "/nope"})
    except Exception as exc:  # noqa: BLE001 - the refusal is the expected outcome
        emit_line({"event": "connect_failed", "data": str(exc)})
    return 0 if got.wait(args.seconds) else 4


def scenario_idle(sio, args):
    state = {"disconnected": False, "reported": False}

    @sio.on("connection_ack", namespace=NAMESPACE)
    def on_ack(data=None):
        emit_line({"event": "connection_ack", "data": data})

    @sio.on("disconnect", namespace=NAMESPACE)
    def on_disconnect(*reason):
        if state["reported"]:
            return
        state["disconnected"] = True
        emit_line({"event": "disconnect", "data": [str(r) for r in reason]})

    connect(sio, args, NAMESPACE)
    time.sleep(args.seconds)
    disconnected = state["disconnected"] or not sio.connected
    state["reported"] = True
    emit_line({"event": "idle_done", "disconnected": disconnected})
    return 6 if disconnected else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--scenario", required=True,
                        choices=["no_stream_id", "join", "bad_namespace", "idle", "root"])
    parser.add_argument("--transports", default="websocket")
    parser.add_argument("--stream", default=None)
    parser.add_argument("--payload", default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    sio = make_client()
    try:
        if args.scenario == "no_stream_id":
            code = scenario_join(sio, args, {})
        elif args.scenario == "join":
            payload = json.loads(args.payload) if args.payload else {"stream_id": args.stream}
            code = scenario_join(sio, args, payload)
        elif args.scenario == "bad_namespace":
            code = scenario_bad_namespace(sio, args)
        elif args.scenario == "root":
            code = scenario_root(sio, args)
        else:
            code = scenario_idle(sio, args)
    except Exception as exc:  # noqa: BLE001 - reported as a line and exit code 2
        emit_line({"event": "connect_error", "data": str(exc)})
        code = 2
    try:
        sio.disconnect()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
