#!/usr/bin/env python3
"""A pyzmq (libzmq) pub/sub and push/pull peer for volley's interoperability tests.

Run it with the venv that scripts/setup-python.sh makes:

    target/venv/bin/python tests/interop/pyzmq_peer.py sub --connect tcp://127.0.0.1:5555 \\
        --topic weather. --count 3
    target/venv/bin/python tests/interop/pyzmq_peer.py pub --bind tcp://127.0.0.1:0 \\
        --topic weather.oslo --topic sport --count 3 --expect-subscriptions 1

Standard output is JSON lines, each flushed as it is written:

* the first line always says where the socket is:
  {"event": "bound", "endpoint": "tcp://127.0.0.1:41234", "port": 41234}  (--bind)
  {"event": "connected", "endpoint": "tcp://127.0.0.1:5555"}              (--connect)
  Binding to port 0 or * picks a free port (bind_to_random_port) and reports it here.
* sub: one line per received message, in arrival order:
  {"event": "message", "n": 0, "frames": ["<hex>", "<hex>", ...]}
  then {"event": "done", "received": N} once --count messages arrived.
* pull: like sub (a PULL socket has no subscriptions: --topic is refused).
* push: like pub, on a PUSH socket (--expect-subscriptions is refused); libzmq's PUSH
  waits for a peer before its first send, so no message is lost to a late joiner.
* pub: {"event": "subscription", "subscribe": true, "prefix": "<hex>"} for each
  subscribe/cancel seen while waiting (--expect-subscriptions), then
  {"event": "done", "sent": N} after the last send.

Messages the pub role sends: for each round r = 0, 1, ... and each --topic T in order, one
message of 1 + K frames (K = --multipart): the topic T, then K payload frames made from
--payload with {topic}, {seq} (= r) and {frame} (= 0..K-1) filled in.

Exit status: 0 when done, 2 on bad arguments, 3 on timeout (a line on stderr says what was
missing), 4 on a ZeroMQ error.
"""

import argparse
import json
import sys
import threading
import time

import zmq


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(", ", ": ")) + "\n")
    sys.stdout.flush()


def die(code, message):
    sys.stderr.write("pyzmq_peer: " + message + "\n")
    sys.stderr.flush()
    sys.exit(code)


def place(sock, args):
    """Binds or connects `sock` as the arguments say and prints the first line."""
    if args.bind:
        endpoint = args.bind
        if endpoint.startswith("tcp://") and endpoint.rsplit(":", 1)[1] in ("0", "*"):
            host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
            port = sock.bind_to_random_port("tcp://" + host)
            endpoint = "tcp://%s:%d" % (host, port)
        else:
            sock.bind(endpoint)
            endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            port = int(endpoint.rsplit(":", 1)[1]) if endpoint.startswith("tcp://") else None
        emit({"event": "bound", "endpoint": endpoint, "port": port})
    else:
        sock.connect(args.connect)
        emit({"event": "connected", "endpoint": args.connect})


def run_sub(args):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PULL if args.role == "pull" else zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, args.hwm)
    if args.role == "sub":
        topics = args.topic if args.topic else [""]
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    place(sock, args)

    deadline = time.monotonic() + args.timeout
    received = 0
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while args.count is None or received < args.count:
        left = deadline - time.monotonic()
        if left <= 0:
            if args.count is None:
                break
            die(3, "timeout after %.1fs: received %d of %d messages" % (args.timeout, received, args.count))
        if not poller.poll(int(left * 1000) + 1):
            continue
        frames = sock.recv_multipart()
        emit({"event": "message", "n": received, "frames": [f.hex() for f in frames]})
        received += 1
    emit({"event": "done", "received": received})
    sock.close(0)
    ctx.term()


def wait_subscriptions(sock, want, deadline):
    """XPUB: reads subscription messages until `want` subscribes were seen."""
    seen = 0
    while seen < want:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000) + 1, zmq.POLLIN):
            die(3, "timeout: saw %d of %d expected subscriptions" % (seen, want))
        msg = sock.recv()
        if not msg:
            continue
        subscribe = msg[0] == 1
        emit({"event": "subscription", "subscribe": subscribe, "prefix": msg[1:].hex()})
        if subscribe:
            seen += 1


def stdin_closed_flag():
    """Returns an Event that is set once standard input reaches end of file."""
    closed = threading.Event()

    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            closed.set()

    threading.Thread(target=watch, daemon=True).start()
    return closed


def run_pub(args):
    ctx = zmq.Context.instance()
    use_xpub = args.expect_subscriptions > 0
    if args.role == "push":
        sock = ctx.socket(zmq.PUSH)
    else:
        sock = ctx.socket(zmq.XPUB if use_xpub else zmq.PUB)
    if use_xpub:
        # Report every subscribe, duplicates included, so each peer's counts.
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.SNDHWM, args.hwm)
    sock.setsockopt(zmq.LINGER, int(args.timeout * 1000))
    place(sock, args)

    deadline = time.monotonic() + args.timeout
    if use_xpub:
        wait_subscriptions(sock, args.expect_subscriptions, deadline)
    if args.delay:
        time.sleep(args.delay)

    topics = args.topic if args.topic else [""]
    closed = stdin_closed_flag() if args.repeat_until_eof else None
    sent = 0
    rnd = 0
    while True:
        if args.count is not None and rnd >= args.count:
            break
        if closed is not None and closed.is_set():
            break
        if closed is None and args.count is None:
            die(2, "pub needs --count N or --repeat-until-eof")
        if time.monotonic() > deadline and closed is not None:
            die(3, "timeout: stdin still open after %.1fs" % args.timeout)
        for t in topics:
            frames = [t.encode()]
            for k in range(args.multipart):
                frames.append(args.payload.format(topic=t, seq=rnd, frame=k).encode())
            sock.send_multipart(frames)
            sent += 1
        rnd += 1
        if args.interval:
            time.sleep(args.interval)
    emit({"event": "done", "sent": sent})
    sock.close()  # lingers up to --timeout for queued messages to go out
    ctx.term()


def main():
    p = argparse.ArgumentParser(
        prog="pyzmq_peer.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("role", choices=["pub", "sub", "push", "pull"], help="pub: a PUB (or XPUB) socket that sends; sub: a SUB socket that receives; push and pull: the same on PUSH and PULL sockets")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--bind", metavar="ENDPOINT", help="bind to ENDPOINT; a tcp:// port of 0 or * binds a free port, reported on the first stdout line")
    where.add_argument("--connect", metavar="ENDPOINT", help="connect to ENDPOINT (tcp://HOST:PORT or ipc://PATH)")
    p.add_argument("--topic", action="append", metavar="T", help="sub: subscribe to prefix T (repeatable; none = everything); pub: publish on topic T (repeatable; each round sends one message per topic, in order; none = empty topic)")
    p.add_argument("--count", type=int, metavar="N", help="sub: exit 0 after N messages (none = receive until --timeout, then exit 0); pub: number of rounds to send")
    p.add_argument("--multipart", type=int, default=1, metavar="K", help="pub: send the topic frame plus K payload frames per message (default 1)")
    p.add_argument("--payload", default="{topic}:{seq}:{frame}", metavar="FMT", help="pub: payload frame template with {topic}, {seq} (the round) and {frame} (0..K-1); default %(default)s")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECS", help="sub: give up (exit 3) if --count messages have not arrived by then; pub: the limit for waiting for subscriptions, for stdin to close with --repeat-until-eof, and for queued messages to go out at exit (default %(default)s)")
    p.add_argument("--expect-subscriptions", type=int, default=0, metavar="N", help="pub: use XPUB and wait until N subscribe requests arrived (duplicates count: a peer subscribing to 2 prefixes sends 2) before sending; the slow-joiner fix")
    p.add_argument("--delay", type=float, default=0.0, metavar="SECS", help="pub: sleep this long before the first send (a crude slow-joiner fix)")
    p.add_argument("--repeat-until-eof", action="store_true", help="pub: keep sending rounds (seq counting up) until standard input is closed, or --count rounds, whichever is first")
    p.add_argument("--interval", type=float, default=0.0, metavar="SECS", help="pub: pause between rounds (default 0)")
    p.add_argument("--hwm", type=int, default=0, metavar="N", help="high-water mark (SNDHWM for pub, RCVHWM for sub); default 0 = unlimited, so nothing is dropped")
    args = p.parse_args()
    if args.multipart < 0:
        p.error("--multipart must be >= 0")
    if args.role == "pull" and args.topic:
        p.error("pull has no subscriptions: --topic is for sub")
    if args.role == "push" and args.expect_subscriptions:
        p.error("push has no subscriptions: --expect-subscriptions is for pub")
    try:
        if args.role in ("sub", "pull"):
            run_sub(args)
        else:
            run_pub(args)
    except zmq.ZMQError as e:
        die(4, "zmq error: %s" % e)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
