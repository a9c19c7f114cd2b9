#!/usr/bin/env python3
"""A webhook receiver that checks every request with the reference `standardwebhooks`
package, for volley's interoperability test. Run it with the venv that
scripts/setup-python.sh makes:

    target/venv/bin/python tests/interop/standardwebhooks_receiver.py \\
        --secret whsec_... --fail-first 2 --timeout 60

It serves HTTP/1.1 (keep-alive) on 127.0.0.1, on a free port. Standard output is JSON
lines, each flushed as it is written:

* first: {"event": "listening", "port": 41234}
* when standard input closes (or --timeout passes): one summary line,
  {"event": "done", "delivered": [ids in the order they were answered 2xx],
   "attempts": {id: n}, "verified": n, "rejected": ["why", ...],
   "types": {id: type}, "distinct_timestamps": {id: n}}
  and the process exits 0 (3 if --timeout passed first).

Each request is verified with standardwebhooks.Webhook(secret).verify(body, headers)
(signature, and the timestamp within 5 minutes); the body's "timestamp" must parse as
ISO 8601. A request that fails a check is answered 400 and listed under "rejected". Of
the requests that pass, the first --fail-first attempts of each webhook-id are answered
500 and the next one 204.
"""

import argparse
import json
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--fail-first", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    webhook = Webhook(args.secret)
    lock = threading.Lock()
    state = {
        "delivered": [],
        "attempts": {},
        "verified": 0,
        "rejected": [],
        "types": {},
        "timestamps": {},
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            msg_id = self.headers.get("webhook-id", "")
            try:
                payload = webhook.verify(body, headers)
                datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
                event_type = payload["type"]
                payload["data"]
            except (WebhookVerificationError, KeyError, ValueError, TypeError) as e:
                with lock:
                    state["rejected"].append(f"{msg_id}: {type(e).__name__}: {e}")
                self.answer(400)
                return
            with lock:
                state["verified"] += 1
                n = state["attempts"].get(msg_id, 0) + 1
                state["attempts"][msg_id] = n
                state["types"][msg_id] = event_type
                state["timestamps"].setdefault(msg_id, set()).add(headers.get("webhook-timestamp"))
                ok = n > args.fail_first
                if ok:
                    state["delivered"].append(msg_id)
            self.answer(204 if ok else 500)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"event": "listening", "port": server.server_address[1]}), flush=True)

    stdin_closed = threading.Event()

    def wait_stdin():
        sys.stdin.read()
        stdin_closed.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    finished = stdin_closed.wait(args.timeout)
    server.shutdown()
    with lock:
        summary = {
            "event": "done",
            "delivered": state["delivered"],
            "attempts": state["attempts"],
            "verified": state["verified"],
            "rejected": state["rejected"],
            "types": state["types"],
            "distinct_timestamps": {k: len(v) for k, v in state["timestamps"].items()},
        }
    print(json.dumps(summary), flush=True)
    if not finished:
        print("standardwebhooks_receiver: --timeout passed before stdin closed", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
