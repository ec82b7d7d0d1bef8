"""Listen to one ASF stream with python-socketio and save its audio.

Usage: listen.py --url http://127.0.0.1:PORT --stream ID [--transports websocket|default]
                 [--offset N] [--reconnect] --out FILE [--timeout SECONDS]

With --reconnect, python-socketio reconnects by itself after the connection drops, and
each connection_ack after the first joins again at the bytes received so far (as the
README's example client does); a disconnect is then only reported.

Prints every event as one JSON line ({"event": name, "data": ...}; audio chunks only as
{"event": "audio_chunk", "len": N}), joins the stream on connection_ack, writes all audio
bytes to FILE. Exit codes: 0 after end_of_stream, 2 connection failed, 3 stream_error,
4 timeout (overall), 5 disconnected before end_of_stream.
Must not: judge the audio; the Rust test compares it.
"""
import argparse
import sys
import threading

from common import NAMESPACE, emit_line, make_client, run_until_done


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--transports", default="websocket")
    parser.add_argument("--offset", type=int, default=None)
    parser.add_argument("--reconnect", action="store_true")
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    sio = make_client(reconnection=args.reconnect)
    done = threading.Event()
    state = {"code": 4, "received": 0, "acks": 0}
    out = open(args.out, "wb")

    def finish(code):
        if not done.is_set():
            state["code"] = code
            done.set()

    @sio.on("connection_ack", namespace=NAMESPACE)
    def on_ack(data=None):
        emit_line({"event": "connection_ack", "data": data})
        state["acks"] += 1
        payload = {"stream_id": args.stream}
        if state["acks"] > 1:
            payload["offset"] = (args.offset or 0) + state["received"]
        elif args.offset is not None:
            payload["offset"] = args.offset
        sio.emit("join_stream", payload, namespace=NAMESPACE)

    @sio.on("audio_chunk", namespace=NAMESPACE)
    def on_chunk(data=None):
        if isinstance(data, (bytes, bytearray)):
            out.write(data)
            state["received"] += len(data)
            emit_line({"event": "audio_chunk", "len": len(data)})
        else:
            emit_line({"event": "audio_chunk", "len": -1, "type": type(data).__name__})

    @sio.on("audio_control", namespace=NAMESPACE)
    def on_control(data=None):
        emit_line({"event": "audio_control", "data": data})
        if isinstance(data, dict) and data.get("event") == "end_of_stream":
            finish(0)

    @sio.on("stream_error", namespace=NAMESPACE)
    def on_stream_error(data=None):
        emit_line({"event": "stream_error", "data": data})
        finish(3)

    @sio.on("*", namespace=NAMESPACE)
    def on_other(event, *data):
        emit_line({"event": event, "data": data[0] if len(data) == 1 else list(data)})

    @sio.on("disconnect", namespace=NAMESPACE)
    def on_disconnect(*reason):
        if not done.is_set():
            emit_line({"event": "disconnect", "data": [str(r) for r in reason]})
            if not args.reconnect:
                finish(5)

    return run_until_done(sio, args, [NAMESPACE], done, state, out)


if __name__ == "__main__":
    sys.exit(main())
