"""``zk0agg verifier serve``: an HTTP service that checks proof artifacts against the circuits it holds.

The check is ``prover.verify``, exactly as the aggregator runs it in-process; this module only carries it over
HTTP and runs it in worker processes, so several proofs are checked at once and a verifier scales out behind the
aggregator (DESIGN.md §2). Each worker loads every circuit's ``Verifier`` once (vk, settings, SRS; no pk).

Endpoints (JSON; wire shapes in ``aggregator.verifier.wire``):

- ``POST /v1/verify`` → the verdict ``{ok, reason, message, loss_before, loss_after, data_commitment, seconds}``;
- ``GET /v1/circuits`` and ``GET /v1/circuits/{id}`` → what each held circuit is (404 for an unknown id);
- ``GET /healthz`` (no token) → ``{ok, circuits, workers}``.

Client errors are 4xx with ``{error, message}``; a proof that fails is *not* an error: it is a 200 verdict.

Bounded: at most ``--max-in-flight`` requests are in the app at once (each holds at most one ``--max-body-bytes``
body and its arrays), beyond that 503 with ``Retry-After``; a connection must deliver a whole request, headers and
body, within ``--read-timeout`` seconds of opening (or of its previous reply), else it is closed; an idle
keep-alive connection is closed after ``--keep-alive-timeout`` seconds; a refused request (401, 413, 503) closes
its connection. So slow or idle clients hold neither connections nor memory for long.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import h11
import numpy as np
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from aggregator.verifier.wire import CircuitInfo, CircuitList, ErrorBody, Health, SliceDims, VerdictBody, VerifyRequest
from prover import SRS, ProverError, Verdict, Verifier, load_srs, load_verifier, verify
from prover.circuit import read_meta
from prover.srs import SRSKind

log = logging.getLogger(__name__)

DEFAULT_PORT = 8470
DEFAULT_MAX_BODY = 1 << 20
DEFAULT_MAX_IN_FLIGHT = 8  # requests in the app at once (reading a body, queued for or in a worker)
DEFAULT_READ_TIMEOUT = 10.0  # seconds for a whole request to arrive (a 1 MiB body on a slow link fits)
DEFAULT_KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
RETRY_AFTER = "1"
TOKEN_ENV = "ZK0_VERIFIER_TOKEN"


@dataclass(frozen=True)
class HeldCircuit:
    """A circuit this service verifies against: its verifier files, its SRS, and what it is (for clients)."""

    dir: Path
    srs: SRS
    info: CircuitInfo
    input_shapes: tuple[tuple[int, ...], ...]  # of W_g, b_g, W_n, b_n


def load_circuits(dirs: list[Path], srs_files: list[Path], srs_kind: SRSKind) -> dict[str, HeldCircuit]:
    """Load each circuit folder with the one of ``srs_files`` it was built with (its ``circuit.json`` says which).

    Raises ``ProverError`` (or ``ValueError``) saying what is wrong: missing or corrupted files, no matching SRS,
    an SRS declared ``public`` for a circuit that records it was built on a dev SRS.
    """
    held: dict[str, HeldCircuit] = {}
    for directory in dirs:
        meta = _read_meta(directory)
        if meta.get("srs_kind") == "dev" and srs_kind != "dev":
            raise ValueError(f"{directory} records it was built on a DEV SRS, which anyone who made it can forge "
                             f"proofs with: refusing to serve it as --srs-kind {srs_kind}; pass --srs-kind dev for "
                             f"tests and demos")  # fmt: skip
        srs = _srs_for(directory, meta, srs_files, srs_kind)
        verifier = load_verifier(directory, srs)
        info = CircuitInfo(
            circuit_id=verifier.circuit_id,
            slice=SliceDims(actions=verifier.shape.actions, hidden=verifier.shape.hidden, rows=verifier.shape.rows),
            logrows=srs.logrows, input_scale=verifier.input_scale, srs_kind=srs.kind, srs_sha256=srs.sha256,
            vk_sha256=meta["vk_sha256"], vk_bytes=verifier.vk.stat().st_size,
        )  # fmt: skip
        if info.circuit_id in held:
            raise ValueError(f"{directory} is circuit {info.circuit_id}, already loaded from "
                             f"{held[info.circuit_id].dir}")  # fmt: skip
        held[info.circuit_id] = HeldCircuit(directory, srs, info, verifier.shape.input_shapes()[:4])
        log.info("holding circuit %s (%s, logrows %d) from %s", info.circuit_id, verifier.shape.label(),
                 info.logrows, directory)  # fmt: skip
    return held


def _read_meta(directory: Path) -> dict:
    """The folder's circuit.json: circuit id, SRS sha256 and kind, vk sha256, logrows."""
    if not directory.is_dir():
        raise ValueError(f"--circuit {directory} is not a folder: give a folder of verifier files "
                         f"(Circuit.export_verifier writes one)")  # fmt: skip
    return read_meta(directory)


def _srs_for(directory: Path, meta: dict, srs_files: list[Path], kind: SRSKind) -> SRS:
    """The SRS file whose sha256 is the one the circuit was built with (load_srs checks size and digest)."""
    problems = []
    for path in srs_files:
        try:
            return load_srs(path, int(meta["logrows"]), kind=kind, sha256=meta["srs_sha256"])
        except ProverError as err:
            problems.append(str(err))
    raise ValueError(f"none of the --srs files is the SRS {directory} was built with (logrows {meta['logrows']}, "
                     f"sha256 {meta['srs_sha256']}): " + "; ".join(problems))  # fmt: skip


# ----------------------------------------------------------------------------------------- worker processes

_verifiers: dict[str, Verifier] = {}


def _init_worker(circuits: list[tuple[Path, SRS]]) -> None:
    """Worker initializer: load every circuit's Verifier once (the commitments cache then lives per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops the workers
    logging.getLogger("ezkl").setLevel(logging.WARNING)
    for directory, srs in circuits:
        verifier = load_verifier(directory, srs)
        _verifiers[verifier.circuit_id] = verifier


def _worker_ready() -> list[str]:
    return sorted(_verifiers)


def _check(circuit_id: str, artifact: bytes, slices: dict[str, np.ndarray]) -> tuple[Verdict, float]:
    started = time.perf_counter()
    verdict = verify(artifact, _verifiers[circuit_id], **slices)
    return verdict, time.perf_counter() - started


class _Workers:
    """The process pool; replaced by a fresh one if a worker dies (a crash must not take the service down)."""

    def __init__(self, circuits: dict[str, HeldCircuit], workers: int) -> None:
        self.args = [(c.dir, c.srs) for c in circuits.values()]
        self.count = workers
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.args,))  # fmt: skip

    def warm_up(self) -> None:
        """Start every worker now and check it loaded the circuits (fail at start-up, not on the first proof)."""
        started = time.perf_counter()
        loaded = [f.result() for f in [self.pool.submit(_worker_ready) for _ in range(self.count)]]
        log.info("%d verifier workers ready in %.1f s (%s)", self.count, time.perf_counter() - started, loaded[0])

    async def check(self, circuit_id: str, artifact: bytes, slices: dict[str, np.ndarray]) -> tuple[Verdict, float]:
        pool = self.pool
        try:
            return await asyncio.wrap_future(pool.submit(_check, circuit_id, artifact, slices))
        except BrokenProcessPool:
            log.error("a verifier worker died; starting a fresh pool")
            if self.pool is pool:
                self.pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            raise HTTPException(503, "a verifier worker died during this check: retry") from None

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------------- the app

_ERROR_NAMES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "too_large", 422: "invalid_request", 503: "unavailable"}  # fmt: skip


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    body = ErrorBody(error=_ERROR_NAMES.get(status, "error"), message=message)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _describe(errors: Sequence[dict]) -> tuple[int, str]:
    """(400, ...) for a body that is not JSON, else (422, "where: what; ...") without echoing the input."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the body is not valid JSON"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


class _BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413: on Content-Length up front, and while the body streams in."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"the request body is over the service's limit of {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await _error(400, "Content-Length is not a number")(scope, receive, send)
            if int(length) > self.max_bytes:
                return await _error(413, too_large, {"Connection": "close"})(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, too_large, headers={"Connection": "close"})
            return message

        await self.app(scope, limited_receive, send)


class _InFlight:
    """At most ``limit`` requests in the app at once; beyond that 503 with ``Retry-After`` (``/healthz`` is exempt).
    One event loop runs the app: a plain counter is enough."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit, self.current = app, limit, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            return await self.app(scope, receive, send)
        if self.current >= self.limit:
            busy = _error(503, f"the verifier has {self.limit} requests in flight: retry in {RETRY_AFTER} s",
                          {"Retry-After": RETRY_AFTER, "Connection": "close"})
            return await busy(scope, receive, send)
        self.current += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.current -= 1


def deadline_protocol(read_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a read deadline: a whole request (headers and body) must arrive within
    ``read_timeout`` seconds of the connection opening or of its previous response, or the connection is closed.
    uvicorn itself times out only idle keep-alive connections: a client that connects and sends nothing, or a byte
    every few seconds, would otherwise hold its connection, and the memory of its request, for as long as it likes.
    A request whose body has arrived is never cut off while the service works on it."""

    class DeadlineH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._deadline = self.loop.call_later(read_timeout, self._read_expired)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._deadline.cancel()
            self._deadline = self.loop.call_later(read_timeout, self._read_expired)

        def connection_lost(self, exc) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

        def _read_expired(self) -> None:
            reading = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
            working = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
            if reading and not working and not self.transport.is_closing():
                log.info("closing a connection that sent no whole request within %.0f s", read_timeout)
                self.transport.close()

    return DeadlineH11Protocol


def _json_body(model: type[BaseModel]) -> dict:
    """OpenAPI for a JSON body an endpoint reads itself (nested models inlined: a pydantic ``#/$defs/...`` reference
    would point at the root of openapi.json, which has no ``$defs``, and clients generated from the schema break)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        return [inline(value) for value in node] if isinstance(node, list) else node

    return {"requestBody": {"content": {"application/json": {"schema": inline(schema)}}, "required": True}}


def create_app(circuits: dict[str, HeldCircuit], token: str | None, workers: int = 2,
               max_body: int = DEFAULT_MAX_BODY, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> FastAPI:  # fmt: skip
    """The service's ASGI app; its lifespan starts (and warms) the worker pool and stops it."""
    pool: _Workers | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        nonlocal pool
        pool = _app.state.workers = _Workers(circuits, workers)
        await asyncio.to_thread(pool.warm_up)
        try:
            yield
        finally:
            await asyncio.to_thread(pool.shutdown)

    def require_token(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer", "Connection": "close"})  # fmt: skip

    def held(circuit_id: str) -> HeldCircuit:
        circuit = circuits.get(circuit_id.lower())
        if circuit is None:
            raise HTTPException(404, f"this verifier does not hold circuit {circuit_id[:80]!r}; it holds "
                                     f"{', '.join(circuits) or 'none'}")  # fmt: skip
        return circuit

    app = FastAPI(title="zk0 verifier", lifespan=lifespan, docs_url=None, redoc_url=None)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    # The body is read here, after the token check, not by FastAPI before it: strangers cost no parsing.
    @v1.post("/verify", response_model=VerdictBody, openapi_extra=_json_body(VerifyRequest))
    async def verify_proof(request: Request) -> VerdictBody:
        try:
            req = VerifyRequest.model_validate_json(await request.body())
        except ClientDisconnect:  # the read deadline closed a slow client: nobody to answer
            raise HTTPException(400, "the client went away before its body arrived") from None
        except ValidationError as err:
            raise HTTPException(*_describe(err.errors())) from None
        circuit = held(req.circuit_id)
        slices = req.slices()
        for (name, value), expected in zip(slices.items(), circuit.input_shapes, strict=True):
            if value.shape != expected:
                raise HTTPException(422, f"{name} has shape {list(value.shape)}, circuit {circuit.info.circuit_id} "
                                         f"needs {list(expected)}")  # fmt: skip
        started = time.perf_counter()
        verdict, seconds = await pool.check(circuit.info.circuit_id, req.artifact_bytes, slices)
        log.info("verdict %s for circuit %s in %.3f s (%.3f s with queueing)", verdict.reason or "OK",
                 circuit.info.circuit_id[:10], seconds, time.perf_counter() - started)  # fmt: skip
        return VerdictBody.from_verdict(verdict, seconds)

    @v1.get("/circuits", response_model=CircuitList)
    async def list_circuits() -> CircuitList:
        return CircuitList(circuits=[c.info for c in circuits.values()])

    @v1.get("/circuits/{circuit_id}", response_model=CircuitInfo)
    async def circuit_info(circuit_id: str) -> CircuitInfo:
        return held(circuit_id).info

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(ok=pool is not None, circuits=len(circuits), workers=workers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(*_describe(exc.errors()))

    app.include_router(v1)
    app.add_middleware(_BodyLimit, max_bytes=max_body)
    app.add_middleware(_InFlight, limit=max_in_flight)  # outermost: a refused request costs no body read
    return app


# ----------------------------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zk0agg verifier serve",
        description="Serve proof verification over HTTP: POST /v1/verify checks a proof artifact against a circuit "
        "this service holds, exactly as the aggregator does in-process (prover.verify).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--circuit", action="append", type=Path, required=True, metavar="DIR",
                        help="a folder of a circuit's verifier files (statement.onnx, settings.json, vk.key, "
                        "circuit.json: what Circuit.export_verifier writes); repeat for several circuits")  # fmt: skip
    parser.add_argument("--srs", action="append", type=Path, required=True, metavar="FILE",
                        help="the KZG SRS file the circuits were built with (matched by its sha256, recorded in "
                        "circuit.json); repeat when circuits of different logrows need different files")  # fmt: skip
    parser.add_argument("--srs-kind", choices=("dev", "public"), default="public",
                        help="'public': a public ceremony file (production); 'dev': made by ezkl gen_srs, whose "
                        "maker can forge proofs (tests and demos only). Default: public")  # fmt: skip
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help=f"file holding the bearer token clients must send (default: env {TOKEN_ENV})")  # fmt: skip
    parser.add_argument("--no-auth", action="store_true",
                        help="serve without a token (only where the aggregator alone can reach it)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="verifier worker processes (default: 2)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY,
                        help=f"largest request body accepted, else 413 (default: {DEFAULT_MAX_BODY})")  # fmt: skip
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                        help="requests handled at once, else 503 with Retry-After (default: "
                        f"{DEFAULT_MAX_IN_FLIGHT})")  # fmt: skip
    parser.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT,
                        help="seconds a connection has to send a whole request, headers and body, else it is "
                        f"closed (default: {DEFAULT_READ_TIMEOUT:g})")  # fmt: skip
    parser.add_argument("--keep-alive-timeout", type=float, default=DEFAULT_KEEP_ALIVE,
                        help=f"seconds an idle keep-alive connection stays open (default: {DEFAULT_KEEP_ALIVE:g})")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="log level (default: info)")  # fmt: skip
    return parser


def read_token(token_file: Path | None) -> str | None:
    """The bearer token from ``token_file`` or the environment; ``None`` if neither gives one."""
    if token_file is not None:
        token = token_file.read_text().strip()
        if not token:
            raise ValueError(f"{token_file} is empty: write the bearer token in it")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


def _log_srs_kind(circuits: dict[str, HeldCircuit]) -> None:
    for circuit in circuits.values():
        srs = circuit.srs
        if srs.kind == "dev":
            log.warning("!!! DEV SRS !!! circuit %s uses %s (sha256 %s): whoever generated it knows its trapdoor and "
                        "can forge proofs that this service will accept. Tests and demos only.",
                        circuit.info.circuit_id, srs.path, srs.sha256)  # fmt: skip
        else:
            log.warning("SRS kind PUBLIC for circuit %s: %s (sha256 %s); nodes must prove with this very file",
                        circuit.info.circuit_id, srs.path, srs.sha256)  # fmt: skip


def make_server(args: argparse.Namespace) -> uvicorn.Server:
    """Load the circuits and build the uvicorn server from parsed arguments (``serve_main`` runs it)."""
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.max_body_bytes < 1024:
        raise ValueError("--max-body-bytes must be at least 1024")
    if args.max_in_flight < 1:
        raise ValueError("--max-in-flight must be at least 1")
    if not (args.read_timeout > 0 and args.keep_alive_timeout > 0):
        raise ValueError("--read-timeout and --keep-alive-timeout must be positive seconds")
    token = read_token(args.token_file)
    if token is None and not args.no_auth:
        raise ValueError(f"no bearer token: pass --token-file FILE or set {TOKEN_ENV} (or --no-auth to serve open)")
    if token is None:
        log.warning("serving WITHOUT a token (--no-auth): anyone who can reach %s:%d can use this verifier",
                    args.host, args.port)  # fmt: skip
    circuits = load_circuits(args.circuit, args.srs, args.srs_kind)
    _log_srs_kind(circuits)
    app = create_app(circuits, token, workers=args.workers, max_body=args.max_body_bytes,
                     max_in_flight=args.max_in_flight)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                            http=deadline_protocol(args.read_timeout), timeout_keep_alive=args.keep_alive_timeout)
    return uvicorn.Server(config)


def serve_main(argv: list[str]) -> int:
    """``zk0agg verifier serve``: parse ``argv``, load the circuits, serve until interrupted."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "debug":
        logging.getLogger("ezkl").setLevel(logging.WARNING)  # one line per vk load otherwise
    try:
        server = make_server(args)
    except (ProverError, ValueError, OSError) as err:
        log.error("cannot start the verifier: %s", err)
        return 2
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
    return 0 if server.started else 1
