"""Endpoint URLs as they may be shown: without the credentials hosted RPC providers put in them.

A hosted RPC endpoint often carries its key in the URL (``https://user:key@host/``, ``?apikey=…``). Such a URL is
used to connect, never shown: the explorer's pages and banners, ``summary.json``, the W&B config and status lines
print ``redact_url(url)``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str | None) -> str | None:
    """``url`` with its user:password and query string replaced by ``***`` (the scheme, host, port and path kept);
    text that is not a URL is returned as it is."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a port: show nothing of what follows the host
        port = None
    netloc = ("***@" if parts.username or parts.password else "") + host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))
