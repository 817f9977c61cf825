"""The explorer's web app: FastAPI routes rendering server-side HTML (Jinja2), one page per concept.

Every page is read from the chain at request time and polls itself (``static/explorer.js``) so it follows a run
as it goes. Errors are pages too: bad input is a 400, an unknown round or a wrong registry address a 404, an
unreachable chain a 503 with a banner that says so; none of them a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator.explorer import view
from aggregator.explorer.config import ExplorerConfig
from aggregator.explorer.reader import ChainReader, NotARegistry, NotFound
from contracts import ChainUnavailable
from contracts.endpoints import redact_url

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
UNREACHABLE = (ChainUnavailable, RequestsConnectionError, RequestsTimeout)


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(short=view.short, num=view.fmt_number, pct=view.fmt_percent, time=view.fmt_time,
                       value=view.fmt_value, amount=view.fmt_amount, tokens=view.fmt_tokens, args=view.event_args,
                       label=view.label, zero=view.is_zero_hash)
    env.globals.update(TOKEN=view.TOKEN)
    return env


def make_app(config: ExplorerConfig) -> FastAPI:
    """The explorer of ``config.registry`` on ``config.rpc_url``."""
    reader = ChainReader(config)
    env = templates()
    app = FastAPI(title="zk0 explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def render(name: str, status_code: int = 200, **context) -> HTMLResponse:
        context.setdefault("registry", config.registry)
        context.setdefault("rpc_url", redact_url(config.rpc_url))  # a hosted endpoint's key stays off the page
        html = env.get_template(name).render(refresh=config.refresh, updated=time.strftime("%H:%M:%S"), **context)
        return HTMLResponse(html, status_code=status_code)

    def error(status: int, title: str, message: str, **context) -> HTMLResponse:
        return render("error.html", status, title=title, message=message, status=status, **context)

    def page(name: str, build: Callable[[], dict]) -> HTMLResponse:
        """Render ``name`` with ``build()``'s data; the explorer's known failures become their own pages."""
        try:
            return render(name, **build())
        except view.BadInput as err:
            return error(400, "Bad request", str(err))
        except NotFound as err:
            return error(404, "Not found", str(err))
        except NotARegistry as err:
            return error(404, "Wrong registry address", str(err))
        except UNREACHABLE as err:
            log.info("chain unreachable: %s", err)
            return error(503, "Chain unreachable", str(err).splitlines()[0][:300], unreachable=True)

    # ``?run=`` picks a run of the registry (its id, or a prefix); default: the outputs' run, else the latest one.
    @app.get("/", response_class=HTMLResponse)
    def federation(run: str | None = None) -> HTMLResponse:
        return page("federation.html", lambda: reader.federation(view.parse_run(run)))

    @app.get("/rounds", response_class=HTMLResponse)
    def rounds(run: str | None = None) -> HTMLResponse:
        return page("rounds.html", lambda: reader.rounds(view.parse_run(run)))

    @app.get("/rounds/{round_}", response_class=HTMLResponse)
    def round_page(round_: str, run: str | None = None) -> HTMLResponse:
        return page("round.html", lambda: reader.round(view.parse_round(round_), view.parse_run(run)))

    @app.get("/wallets/{address}", response_class=HTMLResponse)
    def wallet(address: str, run: str | None = None) -> HTMLResponse:
        return page("wallet.html", lambda: reader.wallet(view.parse_address(address), view.parse_run(run)))

    @app.exception_handler(StarletteHTTPException)
    def http_error(request, exc: StarletteHTTPException) -> HTMLResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        detail = f"no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return error(exc.status_code, title, detail)

    @app.exception_handler(RequestValidationError)
    def bad_request(request, exc: RequestValidationError) -> HTMLResponse:
        return error(400, "Bad request", f"{request.url.path}: {exc.errors()[0].get('msg', 'invalid input')}")

    return app


def serve(config: ExplorerConfig, host: str = "127.0.0.1", port: int = 8480) -> None:
    """Serve the explorer until Ctrl-C (uvicorn)."""
    import uvicorn

    uvicorn.run(make_app(config), host=host, port=port, log_level="warning")
