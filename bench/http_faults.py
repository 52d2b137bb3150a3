"""Hostile HTTP requests against a real `facegan serve` on 127.0.0.1 (part (d) of bench/faults.py).

    python bench/http_faults.py                # the whole catalogue, about 30 s with its slow clients

Every request here deserves a refusal: a bad seed, size, frame count or truncation; a path that is not
one of the server's (`../`, encoded and invalid bytes); a wrong method; a malformed request line or
header; a huge query or header; a body framed ambiguously (request smuggling); a client too slow to
finish its request. Each is sent as raw bytes on its own connection (so malformed ones reach the
server as they are) and counts as "clear" when the answer is a 4xx whose body gives the reason in one
line (`{"error": "..."}`, or the page's one-paragraph HTML) and no traceback. Afterwards the server
must still answer /healthz, and its log must hold no traceback and no 5xx.
"""

from __future__ import annotations

import argparse
import html
import http.client
import importlib.util
import json
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
MAX_SEED = 2**63 - 1
HEADER_TIMEOUT = 2  # --header-timeout of the server under test: the slow clients wait this long


def _serve_load() -> Any:
    """bench/serve_load.py (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_serve_load", BENCH / "serve_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    drip: float = 0.0  # seconds between bytes (a slow client); 0 sends everything at once


def get(target: str, headers: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode("latin-1")


def method(verb: str, target: str = "/api/face.png?seed=1", extra: str = "") -> bytes:
    return f"{verb} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode()


def cases() -> list[Case]:
    """The catalogue: (name, raw request). Grouped as a client would get them wrong."""
    face = "/api/face.png?"
    params = {
        # seeds
        "seed=-1": "seed=-1",
        "seed=2^63": f"seed={MAX_SEED + 1}",
        "seed=10^40": f"seed={10**40}",
        "seed=abc": "seed=abc",
        "seed=1.5": "seed=1.5",
        "seed= (empty)": "seed=",
        "seed=0x10": "seed=0x10",
        "seed=NaN": "seed=NaN",
        "seed=%00": "seed=%00",
        "seed=1 OR 1=1": "seed=1%20OR%201%3D1",
        "seed=1e5": "seed=1e5",
        "seed=(10^5 digits)": "seed=" + "9" * 100_000,
        # size, resample, truncation, model
        "size=1024": "size=1024",
        "size=-64": "size=-64",
        "size=abc": "size=abc",
        "size=64.0": "size=64.0",
        "resample=bicubic": "resample=bicubic",
        "resample= (empty)": "resample=",
        "truncation=-1": "truncation=-1",
        "truncation=nan": "truncation=nan",
        "truncation=inf": "truncation=inf",
        "truncation=0.1": "truncation=0.1",
        "truncation=1e309": "truncation=1e309",
        "truncation=abc": "truncation=abc",
        "truncation=5": "truncation=5",
        "model=nope": "model=nope",
        "model=<script>": "model=%3Cscript%3Ealert(1)%3C/script%3E",
        "model=(200 chars)": "model=" + "a" * 200,
        "model=../../etc/passwd": "model=..%2F..%2Fetc%2Fpasswd",
    }
    out = [Case(f"face {k}", get(face + v)) for k, v in params.items()]
    grid = {
        "n=0": "n=0",
        "n=65": "n=65",
        "n=-1": "n=-1",
        "n=abc": "n=abc",
        "n=10^12": f"n={10**12}",
        "seed=2^63-1&n=2": f"seed={MAX_SEED}&n=2",
        "truncation=-2": "truncation=-2",
    }
    out += [Case(f"grid {k}", get("/api/grid.png?" + v)) for k, v in grid.items()]
    ok = "from=1&to=2&"
    walk = {
        "no from/to": "",
        "no to": "from=1",
        "from=-1": "from=-1&to=2",
        "to=2^63": f"from=1&to={MAX_SEED + 1}",
        "frames=1": ok + "frames=1",
        "frames=61": ok + "frames=61",
        "frames=10^9": ok + "frames=1000000000",
        "frames=-3": ok + "frames=-3",
        "frames=abc": ok + "frames=abc",
        "duration=5": ok + "duration=5",
        "duration=10^6": ok + "duration=1000000",
        "method=cubic": ok + "method=cubic",
        "size=4096": ok + "size=4096",
        "resample=x": ok + "resample=x",
        "truncation=9": ok + "truncation=9",
    }
    out += [Case(f"walk {k}", get("/api/interpolate.gif?" + v)) for k, v in walk.items()]
    out += [
        Case(f"page {k}", get("/?" + v))
        for k, v in {
            "seed=-1": "seed=-1",
            "truncation=abc": "truncation=abc",
            "model=nope": "model=nope",
        }.items()
    ]
    # paths that are not the server's
    for target in (
        "/../../etc/passwd",
        "/api/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/api/face.png%00",
        "/%ff%fe",
        "//etc/passwd",
        "/api/face.png/..%2f..%2fpyproject.toml",
        "/static/../../pyproject.toml",
        "/api/face.png;.php",
        "/.env",
        "/.git/config",
        "/api/face.PNG",
        "/api/" + "a" * 4000,
    ):
        out.append(Case(f"path {target[:40]}", get(target)))
    # huge queries and headers
    out += [
        Case("query of 100 KB", get(face + "seed=1&x=" + "a" * 100_000)),
        Case("query of 1 MB", get(face + "seed=1&x=" + "a" * 1_000_000)),
        Case("query of 20000 parameters", get(face + "&".join(f"p{i}=1" for i in range(20_000)))),
        Case("request line of 64 KB", get("/" + "a" * 65_536)),
        Case("header of 100 KB", get("/healthz", "X-Big: " + "a" * 100_000 + "\r\n")),
        Case(
            "500 headers of 200 bytes",
            get("/healthz", "".join(f"X-H{i}: {'b' * 200}\r\n" for i in range(500))),
        ),
    ]
    # wrong methods
    out += [Case(f"method {v}", method(v)) for v in ("POST", "PUT", "DELETE", "PATCH", "TRACE", "FOO")]
    out += [
        Case("method CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"),
        Case("method lowercase get", method("get", "/healthz")),
    ]
    # malformed request lines and headers
    out += [
        Case("garbage request line", b"GARBAGE\r\n\r\n"),
        Case("HTTP/0.9 request", b"GET /\r\n\r\n"),
        Case("HTTP/2.0 in an HTTP/1 request line", b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n"),
        Case("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
        Case("two Host headers", get("/healthz", "Host: evil.example\r\n")),
        Case("header without a colon", get("/healthz", "NoColonHere\r\n")),
        Case("space before the colon", get("/healthz", "X-Bad : 1\r\n")),
        Case("NUL in a header value", get("/healthz", "X-Nul: a\x00b\r\n")),
        Case("non-ASCII header name", get("/healthz", "X-\xff\xfe: 1\r\n")),
        Case("obsolete line folding", get("/healthz", "X-Fold: a\r\n  b\r\n")),
        Case("bare LF line ends mixed with CRLF", b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\r\nX: 1\n\r\n"),
        Case("bytes 0x80-0xff in the target", b"GET /\x80\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ]
    # ambiguous or lying bodies
    body = "Connection: close\r\n"
    out += [
        Case("Content-Length: -1", method("POST", "/healthz", "Content-Length: -1\r\n")),
        Case("Content-Length: abc", method("POST", "/healthz", "Content-Length: abc\r\n")),
        Case(
            "two different Content-Lengths",
            method("POST", "/healthz", "Content-Length: 1\r\nContent-Length: 2\r\n") + b"ab",
        ),
        Case(
            "Content-Length and chunked (smuggling)",
            method("POST", "/healthz", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
        ),
        Case(
            "bad chunk size", method("POST", "/healthz", "Transfer-Encoding: chunked\r\n") + b"zz\r\nab\r\n"
        ),
        Case("Transfer-Encoding: gzip", method("POST", "/healthz", "Transfer-Encoding: gzip\r\n")),
        Case("POST claiming 1 PB", method("POST", "/api/face.png", "Content-Length: 10" + "0" * 15 + "\r\n")),
        Case("GET with a body", method("GET", "/api/face.png?seed=-5", "Content-Length: 5\r\n") + b"hello"),
        Case(
            "pipelined after a bad one", get(face + "seed=-1").replace(body.encode(), b"") + get("/healthz")
        ),
    ]
    # slow clients: the whole request must arrive within --header-timeout
    out += [
        Case("slow request line (1 byte / 0.5 s)", get("/healthz"), drip=0.5),
        Case(
            "slow headers, never finished", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a", drip=0.4
        ),
        Case("slow body", method("POST", "/healthz", "Content-Length: 100\r\n") + b"x" * 20, drip=0.3),
    ]
    return out


@dataclass
class Reply:
    status: int | None
    reason: str  # the one-line reason from the body, or what went wrong
    clear: bool
    seconds: float
    refused: bool = False  # not served: any 4xx, or (a slow client) closed by the server unanswered


def reason_of(content_type: str, body: bytes) -> str | None:
    """The error's one-line reason, or None when the body gives none (or more than one line)."""
    text = body.decode("utf-8", "replace")
    if "Traceback" in text:
        return None
    if "json" in content_type:
        try:
            message = json.loads(text).get("error")
        except (ValueError, AttributeError):
            return None
    elif "html" in content_type:
        found = re.search(r"<p>(.*?)</p>", text, re.S)
        message = html.unescape(found.group(1)) if found else None
    else:
        message = text.strip()
    if not isinstance(message, str) or not message.strip() or "\n" in message.strip():
        return None
    return message.strip()


def send(port: int, case: Case, timeout: float = 20) -> Reply:
    """Send `case` on a fresh connection and read the answer (or its absence)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            if case.drip:
                for i in range(len(case.raw)):
                    sock.sendall(case.raw[i : i + 1])
                    time.sleep(case.drip)
            else:
                sock.sendall(case.raw)
        except OSError:
            pass  # the server may answer and close before a huge or slow request is all sent
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            body = resp.read()
        except (OSError, http.client.HTTPException) as err:
            # The server closes a connection whose head is not in by --header-timeout, unanswered.
            closed = case.drip > 0 and isinstance(err, http.client.RemoteDisconnected)
            return Reply(
                None, f"no HTTP answer ({type(err).__name__})", False, time.monotonic() - t0, refused=closed
            )
    status, kind = resp.status, resp.getheader("content-type", "")
    reason = reason_of(kind, body)
    clear = 400 <= status < 500 and reason is not None
    if status < 400:
        reason = f"served: {kind or 'no content type'}, {len(body)} bytes"
    return Reply(
        status,
        reason or f"no one-line reason: {body[:100]!r}",
        clear,
        time.monotonic() - t0,
        refused=400 <= status < 500,
    )


def catalogue(
    port: int, selected: list[Case] | None = None, say: Any = print, log: Path | None = None
) -> dict[str, Any]:
    """Send every case to the server on `port`; the tally and one row per case. With the server's
    `log`, a case during which the server logged a traceback is not clear, whatever the client got."""
    rows, clear, refused = [], 0, 0
    for case in selected if selected is not None else cases():
        if case.drip:  # stop dripping once the server should have given up: bounded in time
            budget = int((HEADER_TIMEOUT + 2) / case.drip)
            case = Case(case.name, case.raw[:budget], case.drip)
        seen = log.stat().st_size if log else 0
        reply = send(port, case)
        traced = False
        if log:
            time.sleep(0.1)  # the app may still be failing after the client got its answer
            with open(log, "rb") as fh:
                fh.seek(seen)
                traced = b"Traceback" in fh.read()
        ok = reply.clear and not traced
        clear += ok
        refused += reply.refused and not traced
        rows.append(
            {
                "request": case.name,
                "status": reply.status,
                "clear": ok,
                "refused": reply.refused and not traced,
                "server_traceback": traced,
                "reason": reply.reason[:160],
                "seconds": round(reply.seconds, 2),
            }
        )
        verdict = "clear" if ok else "refused, no reason" if reply.refused and not traced else "NOT REFUSED"
        say(
            f"http {case.name[:44]:44} {reply.status} {verdict}: {reply.reason[:90]}"
            + (" (traceback in the server log)" if traced else "")
        )
    return {
        "requests": len(rows),
        "clear": clear,
        "refused": refused,
        "server_errors_5xx": sum(1 for r in rows if (r["status"] or 0) >= 500),
        "rows": rows,
    }


def hostile_http(selected: list[Case] | None = None, say: Any = print) -> dict[str, Any]:
    """The catalogue against a fresh `facegan serve` (shipped celeba64, --header-timeout 2); then the
    server must be alive, answer /healthz, and have logged no traceback and no 5xx."""
    serve_load = _serve_load()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with serve_load.serving(extra=("--header-timeout", str(HEADER_TIMEOUT)), log=log) as (port, proc):
            result = catalogue(port, selected, say, log)
            healthy = serve_load.get(port, "/healthz")[0] == 200 and proc.poll() is None
        text = log.read_text("utf-8", "replace")
    result["healthy_after"] = healthy
    result["log_tracebacks"] = text.count("Traceback")
    result["log_5xx"] = len(re.findall(r'HTTP/1\.[01]" 5\d\d\b', text))  # access-log lines
    say(
        f"http: {result['refused']}/{result['requests']} refused, {result['clear']} of them with a 4xx and "
        f"a one-line reason; "
        f"{result['server_errors_5xx']} answered 5xx; server healthy afterwards: {healthy}; tracebacks in "
        f"its log: {result['log_tracebacks']}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    result = hostile_http()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
