"""Which raw paths are safe to forward at all, and the request target sent upstream.

The upstream URL is always the chosen replica's `scheme://host:port` followed by the client's
raw path, so the host can only ever come from configuration. Paths that an upstream might
interpret differently from the gateway (dot-segments, encoded slashes, backslashes) are
refused instead of normalised: the gateway never rewrites paths.
"""

from __future__ import annotations

import re
from urllib.parse import quote_from_bytes

# Percent-escapes of "/", "\" and NUL: an upstream may decode them into path structure.
_AMBIGUOUS_ESCAPE = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)
# Controls, space, DEL, "#", "?" and non-ASCII bytes: never part of a raw origin-form path.
_NOT_PATH_BYTE = re.compile(rb"[\x00-\x20\x7f-\xff#?]")
# A "." or ".." segment, its dots possibly percent-encoded (%2e).
_DOT_SEGMENT = re.compile(r"/(?:\.|%2e){1,2}(?=/|$)", re.IGNORECASE)
# Any of the above at all (one scan for the common, safe path; the specific checks below only
# run to name what is wrong).
_ANY_UNSAFE = re.compile(
    rb"[\x00-\x20\x7f-\xff#?\\]|%(?:2f|5c|00)|/(?:\.|%2e){1,2}(?=/|$)", re.IGNORECASE
)
_UNSAFE_QUERY_BYTE = re.compile(rb"[\x00-\x20\x7f#]")
_QUERY_SAFE = "!$&'()*+,-./:;=?@_~%[]"


class UnsafePathError(ValueError):
    """The path could mean something else to the upstream than to the gateway."""


def check_raw_path(raw_path: bytes) -> str:
    """The raw path as text if it is safe to append to an upstream base URL.

    Raises UnsafePathError for anything that is not an origin-form path, contains a
    backslash, an encoded slash/backslash/NUL, an empty leading segment (`//host`),
    or a `.`/`..` segment (also when percent-encoded).
    """
    if not raw_path.startswith(b"/") or raw_path.startswith(b"//"):
        raise UnsafePathError("the path must be an absolute path")
    if _ANY_UNSAFE.search(raw_path) is None:
        return raw_path.decode("ascii")
    if b"\\" in raw_path or _AMBIGUOUS_ESCAPE.search(raw_path):
        raise UnsafePathError("the path contains an encoded or backward slash")
    if _NOT_PATH_BYTE.search(raw_path):
        raise UnsafePathError("the path contains bytes that must be percent-encoded")
    text = raw_path.decode("ascii")
    if _DOT_SEGMENT.search(text):
        raise UnsafePathError("the path contains a dot-segment")
    return text


def request_target(raw_path: str, query_string: bytes) -> str:
    """The origin-form request target sent upstream: a path accepted by `check_raw_path`, and
    the query as received (bytes that cannot appear in a request line percent-encoded)."""
    if not query_string:
        return raw_path
    if query_string.isascii() and not _UNSAFE_QUERY_BYTE.search(query_string):
        return f"{raw_path}?{query_string.decode('ascii')}"
    return f"{raw_path}?{quote_from_bytes(query_string, safe=_QUERY_SAFE)}"
