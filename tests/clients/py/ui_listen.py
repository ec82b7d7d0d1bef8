"""Subscribe to UI updates and listen to one ASF stream over ONE python-socketio connection
(both namespaces on one Client), and save the audio.

Usage: ui_listen.py --url http://127.0.0.1:PORT --stream ID --ids ID[,ID...] --expect N
                    --out FILE [--ui-ns /ui_updates] [--transports websocket|default]
                    [--timeout SECONDS]

Prints every event as one JSON line ({"ns": "audio"|"ui", "event": name, "data": ...};
audio chunks only as {"ns": "audio", "event": "audio_chunk", "len": N}). Subscribes to each
id on ui_connection_ack; once every id is confirmed (subscribed_ui_updates) and the audio
namespace acknowledged, prints {"ns": "ui", "event": "subscribed_all"} and joins the stream.
Exits once end_of_stream came and N UI updates (events other than the namespace's own) did.
Exit codes: 0 done, 2 connection failed, 3 stream_error or ui_error, 4 timeout,
5 disconnected. Must not: judge what came; the Rust test does.
"""
import argparse
import sys
import threading

from common import NAMESPACE, emit_line, make_client, run_until_done

OWN_EVENTS = ("ui_connection_ack", "subscribed_ui_updates", "ui_error")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--ids", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ui-ns", default="/ui_updates")
    parser.add_argument("--transports", default="websocket")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    ui_ns = args.ui_ns
    ids = args.ids.split(",")

    sio = make_client()
    done = threading.Event()
    lock = threading.Lock()
    state = {"code": 4, "acked": False, "subscribed": 0, "joined": False, "ended": False,
             "updates": 0}
    out = open(args.out, "wb")

    def finish(code):
        if not done.is_set():
            state["code"] = code
            done.set()

    def maybe_done():
        if state["ended"] and state["updates"] >= args.expect:
            finish(0)

    def maybe_join():
        with lock:
            if state["joined"] or not state["acked"] or state["subscribed"] < len(ids):
                return
            state["joined"] = True
        emit_line({"ns": "ui", "event": "subscribed_all"})
        sio.emit("join_stream", {"stream_id": args.stream}, namespace=NAMESPACE)

    @sio.on("audio_chunk", namespace=NAMESPACE)
    def on_chunk(data=None):
        if isinstance(data, (bytes, bytearray)):
            out.write(data)
            emit_line({"ns": "audio", "event": "audio_chunk", "len": len(data)})
        else:
            emit_line({"ns": "audio", "event": "audio_chunk", "len": -1})

    @sio.on("*", namespace=NAMESPACE)
    def on_audio_event(event, *data):
        payload = data[0] if len(data) == 1 else list(data)
        emit_line({"ns": "audio", "event": event, "data": payload})
        if event == "connection_ack":
            state["acked"] = True
            maybe_join()
        elif event == "audio_control" and isinstance(payload, dict) \
                and payload.get("event") == "end_of_stream":
            state["ended"] = True
            maybe_done()
        elif event == "stream_error":
            finish(3)

    @sio.on("*", namespace=ui_ns)
    def on_ui_event(event, *data):
        payload = data[0] if len(data) == 1 else list(data)
        emit_line({"ns": "ui", "event": event, "data": payload})
        if event == "ui_connection_ack":
            for client_id in ids:
                sio.emit("subscribe_to_ui_updates", {"client_id": client_id}, namespace=ui_ns)
        elif event == "subscribed_ui_updates":
            state["subscribed"] += 1
            maybe_join()
        elif event == "ui_error":
            finish(3)
        elif event not in OWN_EVENTS:
            state["updates"] += 1
            maybe_done()

    for name, ns in (("audio", NAMESPACE), ("ui", ui_ns)):
        def on_disconnect(*reason, name=name):
            if not done.is_set():
                emit_line({"ns": name, "event": "disconnect", "data": [str(r) for r in reason]})
                finish(5)
        sio.on("disconnect", on_disconnect, namespace=ns)

    return run_until_done(sio, args, [NAMESPACE, ui_ns], done, state, out)


if __name__ == "__main__":
    sys.exit(main())
