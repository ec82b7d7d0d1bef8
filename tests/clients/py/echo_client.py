"""Drive the echo example (examples/echo.rs) with python-socketio and print what came back.

Usage: echo_client.py --url http://127.0.0.1:PORT --namespace NS [--auth JSON]
                      [--transports websocket|default] --messages JSON [--seconds N]

--messages is a JSON list of {"event": "message" | "message-with-ack", "args": [...]}; an
argument {"$bin": BASE64} is sent as bytes. Prints JSON lines: {"event": "auth", "data": ...}
once connected, then for each message in order {"event": "reply", "kind": "message-back" |
"ack", "args": [...]} (bytes printed as {"$bin": BASE64}), then {"event": "done"}.
Exit 0: done; 2: connection failed; 4: an awaited answer did not come within --seconds.
Owns: the client side of the echo conversation. Must not: judge the answers (the Rust test
compares them).
"""
import argparse
import base64
import json
import queue
import sys

from common import emit_line, make_client, transports_arg


def decode(value):
    """JSON from the command line -> python values, {"$bin": b64} -> bytes."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return base64.b64decode(value["$bin"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def encode(value):
    """Received python values -> printable JSON, bytes -> {"$bin": b64}."""
    if isinstance(value, (bytes, bytearray)):
        return {"$bin": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", default="/")
    parser.add_argument("--auth", default=None)
    parser.add_argument("--transports", default="websocket")
    parser.add_argument("--messages", default="[]")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    ns = args.namespace
    messages = json.loads(args.messages)
    auth = json.loads(args.auth) if args.auth else None

    sio = make_client()
    inbox = queue.Queue()

    @sio.on("auth", namespace=ns)
    def on_auth(*data):
        inbox.put(("auth", list(data)))

    @sio.on("message-back", namespace=ns)
    def on_back(*data):
        inbox.put(("message-back", list(data)))

    def wait(kind):
        try:
            got_kind, data = inbox.get(timeout=args.seconds)
        except queue.Empty:
            emit_line({"event": "timeout", "data": kind})
            return None
        if got_kind != kind:
            emit_line({"event": "unexpected", "kind": got_kind, "args": encode(data)})
            return None
        return data

    try:
        sio.connect(args.url, namespaces=[ns], auth=auth,
                    transports=transports_arg(args.transports), wait_timeout=10)
    except Exception as exc:  # noqa: BLE001 - reported as a line and exit code 2
        emit_line({"event": "connect_error", "data": str(exc)})
        return 2
    code = 0
    try:
        data = wait("auth")
        if data is None:
            return 4
        emit_line({"event": "auth", "data": encode(data[0] if len(data) == 1 else data)})
        for msg in messages:
            sent = tuple(decode(msg.get("args", [])))
            if msg["event"] == "message-with-ack":
                def on_ack(*ack_args):
                    inbox.put(("ack", list(ack_args)))
                sio.emit("message-with-ack", sent, namespace=ns, callback=on_ack)
                data = wait("ack")
                kind = "ack"
            else:
                sio.emit(msg["event"], sent, namespace=ns)
                data = wait("message-back")
                kind = "message-back"
            if data is None:
                code = 4
                break
            emit_line({"event": "reply", "kind": kind, "args": encode(data)})
        if code == 0:
            emit_line({"event": "done"})
    finally:
        try:
            sio.disconnect()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
