"""The safety rules of an endpoint: the upstream URL a route may reach (under the prefix,
nothing that names another host) and the headers that may cross, each way."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from multidict import CIMultiDict
from yarl import URL

from rxchannel.core import ApplicationError, ErrorCode

from ._endpoint_config import HOP_BY_HOP, Endpoint

__all__ = ["refuse", "request_headers", "response_headers", "upstream_url", "within"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_SAFE = "!$&'()*+,;=:@-._~"
_MAX_HEADER = 8 * 1024
_MAX_QUERY = 8 * 1024


def refuse(message: str, code: int = ErrorCode.REJECTED) -> ApplicationError:
    return ApplicationError(message, code)


def upstream_url(endpoint: Endpoint, rest: str, query: object = None) -> URL:
    """The upstream URL for ``endpoints/<name>/<rest>``, checked to stay under the endpoint.

    ``rest`` may end with ``?query``; ``query`` (a dict of strings or lists of strings, or
    a string) is added to it.

    Raises:
        ApplicationError: REJECTED for a path that would leave the endpoint (``..``, an
            encoded separator, a scheme or ``//``), INVALID for a malformed query.
    """
    path, _, query_string = rest.partition("?")
    shown = rest[:200]
    if "#" in rest:
        raise refuse(f"{shown!r}: a fragment has no place in a request to an endpoint", ErrorCode.INVALID)
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in rest) or "\\" in path:
        raise refuse(f"{shown!r}: spaces, control characters and backslashes are not allowed in an endpoint's path")
    if path.startswith("/") or _SCHEME.match(path):
        raise refuse(f"{shown!r} names another host (an absolute URL): an endpoint reaches only its own upstream")
    segments = path.split("/") if path else []
    clean = []
    for index, segment in enumerate(segments):
        try:
            decoded = unquote(segment, errors="strict") if "%" in segment else segment
        except UnicodeDecodeError:
            raise refuse(f"{shown!r}: a percent-escape that is not UTF-8", ErrorCode.INVALID) from None
        if decoded in (".", ".."):
            raise refuse(f"{shown!r}: '.' and '..' are not allowed in an endpoint's path")
        if "/" in decoded or "\\" in decoded or "\x00" in decoded:
            raise refuse(f"{shown!r}: an encoded '/', '\\' or NUL is not allowed in an endpoint's path")
        if not segment and index != len(segments) - 1:
            raise refuse(f"{shown!r}: empty segments ('//') are not allowed in an endpoint's path")
        clean.append(quote(decoded, safe=_SAFE))
    raw_prefix = endpoint.base.raw_path.rstrip("/")
    full = raw_prefix + "/" + "/".join(clean) if clean else (raw_prefix or "/")
    url = endpoint.base.with_path(full, encoded=True)
    if query_string:
        url = _with_raw_query(url, query_string)
    if query is not None:
        url = _add_query(url, query)
    if len(url.raw_query_string) > _MAX_QUERY:
        raise refuse(f"the query is longer than {_MAX_QUERY} characters", ErrorCode.INVALID)
    if not within(endpoint, url):  # defence in depth: what was built must be under the prefix
        raise refuse(f"{shown!r} would leave the endpoint {endpoint.name!r}")
    return url


def _with_raw_query(url: URL, query: str) -> URL:
    """``url`` with ``query`` appended as written (percent-escapes kept, anything else escaped)."""
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == "#" for ch in query):
        raise refuse("the query may not contain spaces, control characters or '#'", ErrorCode.INVALID)
    query = quote(query, safe=_SAFE + "/?%")
    joined = f"{url.raw_query_string}&{query}" if url.raw_query_string else query
    return URL(f"{url.with_query(None)}?{joined}", encoded=True)


def _add_query(url: URL, query: object) -> URL:
    if isinstance(query, str):
        return _with_raw_query(url, query)
    if not isinstance(query, dict):
        raise refuse('"query" must be an object of strings (or lists of strings), or a string', ErrorCode.INVALID)
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
            raise refuse(
                f'"query" value for {str(key)[:40]!r} must be a string or a list of strings', ErrorCode.INVALID
            )
        pairs.extend((str(key), str(v)) for v in values)
    return url.extend_query(pairs)


def within(endpoint: Endpoint, url: URL) -> bool:
    """Whether ``url`` is the endpoint's upstream, at or under its prefix, with no dot segments."""
    base = endpoint.base
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        return False
    path, prefix = url.path, endpoint.prefix
    for segment in url.raw_path.split("/"):  # a redirect's Location may hide dot segments or separators
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            return False
    return not prefix or path == prefix or path.startswith(prefix + "/")


def request_headers(endpoint: Endpoint, given: object) -> CIMultiDict[str]:
    """The worker's headers that may go upstream (allow-list, no hop-by-hop), checked."""
    headers: CIMultiDict[str] = CIMultiDict()
    if given is None:
        return headers
    if not isinstance(given, dict):
        raise refuse('"headers" must be an object of header names to strings', ErrorCode.INVALID)
    named = [str(v) for k, v in given.items() if str(k).lower() == "connection"]
    dropped = {name.strip().lower() for value in named for name in value.split(",")}
    for name, value in given.items():
        lower = str(name).lower()
        if lower in HOP_BY_HOP or lower in dropped or lower not in endpoint.request_headers:
            continue
        if not isinstance(value, str) or len(value) > _MAX_HEADER or any(c in value for c in "\r\n\x00"):
            raise refuse(
                f"header {lower!r} must be a string of at most {_MAX_HEADER} characters, on one line", ErrorCode.INVALID
            )
        headers.add(lower, value)
    return headers


def response_headers(endpoint: Endpoint, headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream's response headers the worker may see: allow-listed, no hop-by-hop, one
    value per name (repeated headers joined with ``", "``)."""
    connection = {n.strip().lower() for v in _all(headers, "connection") for n in v.split(",")}
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection or lower not in endpoint.response_headers:
            continue
        out[lower] = f"{out[lower]}, {value}" if lower in out else value
    return out


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value is not None else []
