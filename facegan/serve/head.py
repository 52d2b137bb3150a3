"""What `facegan serve` refuses in a request head before h11 parses it: size limits h11 does not
enforce, and syntax h11 tolerates but a proxy in front may read differently.

h11 bounds only an *incomplete* head (its `max_incomplete_event_size`): a 100 KB header that arrives
in one read is parsed and served. And, as RFC 9112 allows, it accepts bare-LF line ends and unfolds
obsolete line folding. A server behind a proxy should not: where two parsers disagree about where a
header line ends, a request can be smuggled past the proxy. No client in use sends either, so each is
a 400 saying what to send instead; so is a head with both Content-Length and Transfer-Encoding,
which h11 would frame by the latter (RFC 9112 section 6.1 allows either). A request line naming
HTTP/2 or any major version but 1 is a 400 too (not a 505, which monitoring would count as the
server's fault); HTTP/1.x with x > 1 is served as HTTP/1.1, as RFC 9112 section 2.3 asks.

Pure functions of bytes and `ServeLimits`: facegan/serve/conn.py applies them to each request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facegan.serve.limits import ServeLimits

# Room on the request line besides the target: method, two spaces, "HTTP/1.1" and CRLF.
REQUEST_LINE_SLACK = 64
HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a head (it accepts a bare LF too)
VERSION = re.compile(rb"HTTP/([0-9])\.[0-9]")


@dataclass(frozen=True)
class Refusal:
    """The answer a request gets instead of being served: a status and a one-line reason."""

    status: int
    message: str


def head_limit(limits: ServeLimits) -> int:
    """Bytes of the start of a request that decide every refusal of `check_head`: a head within the
    limits ends (blank line included) within them, one without an end by then breaks a limit."""
    return limits.max_target + REQUEST_LINE_SLACK + limits.max_header_bytes + 4


def check_head(buf: bytes | bytearray, limits: ServeLimits) -> Refusal | None:
    """The refusal the request starting `buf` deserves, or None. `buf` may hold only part of the head
    (then only a limit it already breaks is refused) or more than the head (the rest is ignored)."""
    max_line = limits.max_target + REQUEST_LINE_SLACK
    end = HEAD_END.search(buf)
    if end is None:  # incomplete: refuse early only what is already too long
        nl = buf.find(b"\n")
        if (nl < 0 and len(buf) > max_line) or nl > max_line:
            return _too_long_target(limits)
        if nl >= 0 and len(buf) - nl - 1 > limits.max_header_bytes:
            return _too_large_headers(limits)
        return None
    lines = bytes(buf[:end.start() + 1]).split(b"\n")[:-1]  # each line without its LF
    request_line, fields = lines[0], lines[1:]
    rest = request_line.rstrip(b"\r").partition(b" ")[2]
    target, _, version = rest.rpartition(b" ")
    if len(target) > limits.max_target or len(request_line) > max_line:
        return _too_long_target(limits)
    major = VERSION.fullmatch(version)
    if major and major[1] != b"1":
        shown = version.decode("ascii")
        return Refusal(400, f"{shown} is not spoken here: send an HTTP/1.1 request line")
    if len(fields) > limits.max_headers:
        return Refusal(431, f"more than {limits.max_headers} header fields; send fewer")
    if sum(len(f) + 1 for f in fields) > limits.max_header_bytes:
        return _too_large_headers(limits)
    if any(not line.endswith(b"\r") for line in lines) or end.group() == b"\n\n":
        return Refusal(400, "bare LF line end in the request head: end every line with CRLF")
    if any(f[:1] in (b" ", b"\t") for f in fields):
        return Refusal(400, "obsolete header line folding (a line starting with a space or tab): "
                            "put each header field on one line")
    names = {f.partition(b":")[0].strip().lower() for f in fields}
    if b"content-length" in names and b"transfer-encoding" in names:
        return Refusal(400, "both Content-Length and Transfer-Encoding: send one of them")
    return None


def _too_long_target(limits: ServeLimits) -> Refusal:
    return Refusal(414, f"request target (path and query) longer than {limits.max_target} bytes")


def _too_large_headers(limits: ServeLimits) -> Refusal:
    return Refusal(431, f"request header fields larger than {limits.max_header_bytes} bytes in all")
