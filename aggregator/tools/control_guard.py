"""``flower-superlink`` whose Control API answers loopback peers only (N1, issue 30).

flwr 1.41 serves the Fleet API (nodes), the Control API (submit, stop and list runs, read their logs, register
SuperNode keys) and the Runtime API on one host and port, and without Flower's enterprise account authentication
(``FLWR_OIDC_ENABLED``) the Control API has no login: a SuperLink that the nodes can reach is a Control API that
anyone can reach. ``flower-superlink`` has no flag to put the Control API elsewhere (``--control-api-address`` is
deprecated and ignored), so ``zk0agg start`` runs it through this module, which puts one ASGI middleware in front of
Flower's own: a request under ``/v1/control`` from a peer that is not a loopback address gets ``403`` before Flower
reads it. The operator's commands (``zk0agg run``, ``status``; ``flwr`` on the aggregator's machine) connect through
127.0.0.1. A reverse proxy on the aggregator's machine would make every peer loopback: keep the SuperLink's port
direct.

Run as ``python -m aggregator.tools.control_guard <flower-superlink arguments>``.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable

CONTROL_PREFIX = "/v1/control"

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 (and ::ffff:127.x): this machine. Anything else, or no address at all, is not."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class LoopbackControlOnly:
    """ASGI middleware: the Control API for loopback peers; every other request passes untouched."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope.get("type") in ("http", "websocket") else ""
        client = scope.get("client") or (None, None)
        if path.rstrip("/").startswith(CONTROL_PREFIX) and not is_loopback(client[0]):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            body = json.dumps({"detail": "the Control API of this SuperLink answers its own machine only "
                                         "(zk0agg start --control-api-public widens it)"}).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def guarded(flowers: Callable[[], list]) -> Callable[[], list]:
    """Flower's middleware list (``flwr.superlink.main._get_middleware``) with ``LoopbackControlOnly`` first
    (outermost: it answers before Flower parses anything)."""
    from starlette.middleware import Middleware

    return lambda: [Middleware(LoopbackControlOnly), *flowers()]


def install() -> None:
    """Every SuperLink app this process creates gets the guard (``create_app`` asks ``_get_middleware``)."""
    import flwr.superlink.main as superlink

    superlink._get_middleware = guarded(superlink._get_middleware)


def main() -> None:
    from flwr.superlink.cli import flower_superlink

    install()
    sys.argv[0] = "flower-superlink"
    sys.exit(flower_superlink())


if __name__ == "__main__":
    main()
