#!/usr/bin/env python3
"""Stalled uploads against a Seqcast server, and how long a normal forecast waits behind them.

Opens ``--clients`` connections that each send their headers and half a body,
then nothing; then sends one normal forecast and times it. Exits 1 when that
forecast fails or takes ``--under`` seconds or more. Standard library only, so
the container smoke test can run it on the host.

    python3 scripts/stalled_clients.py http://127.0.0.1:8000 --model demo --clients 16 --under 1.0
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

VALUES = [112.0, 118.0, 132.0, 129.0, 121.0, 135.0, 148.0, 148.0, 136.0, 119.0, 104.0, 118.0] * 3


def stall(url: str, path: str, body: bytes, headers: dict[str, str]) -> socket.socket:
    """A connection that has sent its headers and half its body."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=60)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    sock.sendall(head.encode() + body[: len(body) // 2])
    return sock


def forecast(url: str, path: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, float]:
    """(status, seconds) of one normal forecast."""
    req = urllib.request.Request(
        url + path, data=body, headers={"Content-Type": "application/json", **headers}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0  # no answer within the timeout
    return status, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--clients", type=int, default=16, help="stalled connections (default 16)")
    parser.add_argument("--under", type=float, default=1.0, help="the normal forecast must take less (s)")
    parser.add_argument("--key", default=None, help="an API key, sent as X-API-Key")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    path = f"/v1/models/{args.model}/forecast"
    headers = {"X-API-Key": args.key} if args.key else {}
    body = json.dumps({"series": [{"values": VALUES}]}).encode()
    socks = [stall(url, path, body, headers) for _ in range(args.clients)]
    time.sleep(0.5)  # every stalled connection is in before the normal one
    status, seconds = forecast(url, path, body, headers, timeout=max(30.0, 3 * args.under))
    for sock in socks:
        sock.close()
    ok = status == 200 and seconds < args.under
    print(
        f"{args.clients} stalled clients: a normal forecast answered {status} in {seconds:.3f} s "
        f"(limit {args.under:g} s): {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
