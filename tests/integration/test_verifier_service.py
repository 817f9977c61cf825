"""The verifier service end to end: real EZKL proofs, a real uvicorn on a loopback port, two worker processes.

One tiny circuit is built per session (A=2, H=8, m=4 at input scale 8: logrows 10, a proof in ~2 s, dev SRS; shared
with test_verifier_api_fuzz.py) and exported as a verifier would receive it; the service is started through the
CLI's own code path (both in tests/integration/conftest.py).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.verifier.client import RemoteVerifier, VerifierRequestError, VerifierUnavailable
from aggregator.verifier.service import serve_main
from aggregator.verifier.wire import VerifyRequest
from contracts.local_chain import free_port
from prover import BAD_PROOF, NO_IMPROVEMENT, UNBOUND, dev_srs, load_verifier, prove
from prover import verify as verify_in_process
from prover.hashing import sha256_hex
from prover.synthetic import synthetic_slice

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def circuit(service_circuit):
    """The tiny circuit built once a session (tests/integration/conftest.py): A=2, H=8, m=4, logrows 10."""
    return service_circuit


@pytest.fixture(scope="module")
def honest(circuit):
    slice_ = synthetic_slice(circuit.shape, seed=1)
    return slice_, prove(circuit, slice_)


@pytest.fixture(scope="module")
def server(circuit, tmp_path_factory, serve_verifier):
    with serve_verifier(circuit, tmp_path_factory.mktemp("verifier-service"), TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def service(server):
    return server[1]


@pytest.fixture(scope="module")
def http(service):
    with httpx.Client(base_url=service, timeout=30) as client:
        yield client


def body(circuit, artifact, slice_, **replace) -> dict:
    arrays = {"W_g": slice_.W_g, "b_g": slice_.b_g, "W_n": slice_.W_n, "b_n": slice_.b_n, **replace}
    data = artifact if isinstance(artifact, bytes) else artifact.to_bytes()
    return VerifyRequest.build(circuit.circuit_id, data, **arrays).model_dump()


def post(http, payload, headers=AUTH) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http.post("/v1/verify", content=content, headers={**headers, "Content-Type": "application/json"})


def tampered(artifact):
    proof = bytearray(artifact.proof)
    proof[len(proof) // 2] ^= 0x01
    return dataclasses.replace(artifact, proof=bytes(proof), proof_hash=sha256_hex(bytes(proof)))


def test_valid_artifact_is_ok_with_its_losses(http, circuit, honest):
    slice_, artifact = honest
    response = post(http, body(circuit, artifact, slice_))
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["ok"] is True and verdict["reason"] is None
    assert (verdict["loss_before"], verdict["loss_after"]) == (artifact.loss_before, artifact.loss_after)
    assert verdict["data_commitment"] == artifact.data_commitment
    assert 0 < verdict["seconds"] < 10


def test_tampered_proof_and_wrong_update_are_verdicts_not_errors(http, circuit, honest):
    slice_, artifact = honest
    response = post(http, body(circuit, tampered(artifact), slice_))
    assert response.status_code == 200 and response.json()["reason"] == BAD_PROOF
    w_n = slice_.W_n.copy()
    w_n[1, 3] += 2.0**-circuit.input_scale  # one quantization step
    response = post(http, body(circuit, artifact, slice_, W_n=w_n))
    assert response.status_code == 200 and response.json()["reason"] == UNBOUND
    assert "W_n" in response.json()["message"]
    response = post(http, body(circuit, b"not an artifact", slice_))
    assert response.status_code == 200 and response.json()["reason"] == BAD_PROOF


def test_malformed_bodies_are_4xx_with_a_message(http, circuit, honest):
    slice_, artifact = honest
    valid = body(circuit, artifact, slice_)
    nan_w_n = slice_.W_n.copy()
    nan_w_n[0, 0] = np.nan  # the client's encoder refuses NaN too: write the bytes by hand
    nan_array = {**valid["W_n"], "data": base64.b64encode(nan_w_n.tobytes()).decode()}
    cases = {
        "not json": (b"{not json", 400, "not valid JSON"),
        "empty": (b"", 400, "not valid JSON"),
        "not utf-8": (b'{"circuit_id": "\xff"}', 400, "not valid JSON"),
        "not an object": (b"[1, 2]", 422, "should be an object"),
        "missing field": ({k: v for k, v in valid.items() if k != "b_n"}, 422, "b_n"),
        "extra field": ({**valid, "more": 1}, 422, "more"),
        "bad base64 artifact": ({**valid, "artifact": "***"}, 422, "artifact is not valid base64"),
        "bad base64 data": ({**valid, "W_g": {**valid["W_g"], "data": "a b"}}, 422, "not valid base64"),
        "float64": ({**valid, "W_g": {**valid["W_g"], "dtype": "float64"}}, 422, "W_g.dtype"),
        "data/shape mismatch": ({**valid, "W_g": {**valid["W_g"], "shape": [3, 8]}}, 422, "bytes"),
        "nan": ({**valid, "W_n": nan_array}, 422, "finite"),
        "shape not the circuit's": (body(circuit, artifact, slice_, W_n=slice_.W_n.T), 422, "W_n has shape [8, 2]"),
        "bad circuit id": ({**valid, "circuit_id": "0x12"}, 422, "circuit_id"),
        "array not an object": ({**valid, "b_g": [0.1, 0.2]}, 422, "b_g"),
    }
    for name, (payload, status, words) in cases.items():
        response = post(http, payload)
        assert response.status_code == status, (name, response.text)
        assert words in response.json()["message"], (name, response.json())
    unknown = {**valid, "circuit_id": "0x" + "ab" * 32}
    response = post(http, unknown)
    assert response.status_code == 404 and "does not hold circuit" in response.json()["message"]


def test_oversized_bodies_are_413(http):
    response = post(http, b"x" * ((1 << 20) + 1))  # Content-Length over the limit
    assert response.status_code == 413 and "limit" in response.json()["message"]

    def chunks():  # no Content-Length: the limit holds on the streamed body
        for _ in range(20):
            yield b"y" * 65536

    response = http.post("/v1/verify", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_token_is_required_except_for_healthz(http, circuit, honest):
    slice_, artifact = honest
    payload = body(circuit, artifact, slice_)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
        response = post(http, payload, headers=headers)
        assert response.status_code == 401 and "token" in response.json()["message"], headers
    assert post(http, b"{not json", headers={}).status_code == 401  # the token is checked before the body
    assert http.get("/v1/circuits").status_code == 401
    assert http.get("/healthz").json() == {"ok": True, "circuits": 1, "workers": 2}


def test_circuit_metadata(http, circuit):
    listed = http.get("/v1/circuits", headers=AUTH).json()["circuits"]
    assert [c["circuit_id"] for c in listed] == [circuit.circuit_id]
    info = http.get(f"/v1/circuits/{circuit.circuit_id}", headers=AUTH).json()
    assert info["slice"] == {"actions": 2, "hidden": 8, "rows": 4}
    assert (info["logrows"], info["srs_kind"], info["srs_sha256"]) == (circuit.logrows, "dev", circuit.srs.sha256)
    assert info["vk_sha256"] == sha256_hex(circuit.vk.read_bytes()) and info["vk_bytes"] == circuit.vk.stat().st_size
    response = http.get("/v1/circuits/0x" + "00" * 32, headers=AUTH)
    assert response.status_code == 404 and "does not hold circuit" in response.json()["message"]


def test_concurrent_requests_both_succeed(http, circuit, honest):
    slice_, artifact = honest
    payloads = [body(circuit, artifact, slice_), body(circuit, tampered(artifact), slice_)]
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda p: post(http, p), payloads))
    assert [r.status_code for r in responses] == [200, 200]
    assert [r.json()["reason"] for r in responses] == [None, BAD_PROOF]


def test_remote_verifier_gives_the_in_process_verdict(service, circuit, honest):
    slice_, artifact = honest
    worse = synthetic_slice(circuit.shape, seed=2, improve=False)
    w_n = slice_.W_n.copy()
    w_n[0, 1] -= 0.5
    cases = [
        (artifact.to_bytes(), slice_, {}),
        (tampered(artifact).to_bytes(), slice_, {}),
        (artifact.to_bytes(), slice_, {"W_n": w_n}),
        (b"garbage", slice_, {}),
        (prove(circuit, worse).to_bytes(), worse, {}),
    ]
    local = load_verifier(circuit)
    weights = (slice_.W_g, slice_.b_g, slice_.W_n, slice_.b_n)
    with RemoteVerifier(service, TOKEN, timeout=30) as remote:
        assert remote.health().ok and remote.circuit(circuit.circuit_id).logrows == circuit.logrows
        reasons = []
        for data, s, replace in cases:
            arrays = {"W_g": s.W_g, "b_g": s.b_g, "W_n": s.W_n, "b_n": s.b_n, **replace}
            expected = verify_in_process(data, local, **arrays)
            assert remote.verify(data, **arrays) == expected
            reasons.append(expected.reason)
        assert reasons == [None, BAD_PROOF, UNBOUND, BAD_PROOF, NO_IMPROVEMENT]
        oversized = b"x" * (remote.max_artifact_bytes + 1)  # refused before any request
        assert remote.verify(oversized, *weights).reason == BAD_PROOF
        with pytest.raises(VerifierRequestError, match="W_n has shape") as err:
            remote.verify(artifact.to_bytes(), slice_.W_g, slice_.b_g, slice_.W_n[:1], slice_.b_n)
        assert err.value.status == 422 and isinstance(err.value, ValueError)  # as prover.verify raises ValueError
        with pytest.raises(VerifierRequestError) as err:
            remote.circuit("0x" + "00" * 32)
        assert err.value.status == 404
    with RemoteVerifier(service, "wrong", circuit_id=circuit.circuit_id) as remote:
        with pytest.raises(VerifierRequestError) as err:
            remote.verify(artifact.to_bytes(), *weights)
        assert err.value.status == 401
    with RemoteVerifier(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2, circuit_id=circuit.circuit_id) as gone:
        with pytest.raises(VerifierUnavailable, match="unreachable"):
            gone.verify(artifact.to_bytes(), *weights)


# --------------------------------------------------------------------------------------------------- fuzz

_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                     max_leaves=6)  # fmt: skip
_b64 = st.binary(max_size=96).map(lambda b: base64.b64encode(b).decode())
_FIELDS = (
    [("circuit_id",), ("artifact",)]
    + [(a,) for a in ("W_g", "b_g", "W_n", "b_n")]
    + [(a, k) for a in ("W_g", "b_n") for k in ("shape", "dtype", "data")]
)


@pytest.fixture(scope="module")
def valid_body(circuit, honest):
    slice_, artifact = honest
    return body(circuit, artifact, slice_)


def _mutate(valid: dict, path: tuple[str, ...], value, delete: bool) -> bytes:
    payload = json.loads(json.dumps(valid))
    target = payload
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(payload).encode()


def _edit_artifact(valid: dict, position: int, char: str) -> bytes:
    """One character of the artifact's JSON replaced: the body is well-formed, the artifact mostly is not."""
    text = base64.b64decode(valid["artifact"]).decode()
    position %= len(text)
    edited = (text[:position] + char + text[position + 1 :]).encode()
    return _mutate(valid, ("artifact",), base64.b64encode(edited).decode(), False)


_bodies = st.one_of(
    st.binary(max_size=64),  # not JSON, or not an object
    _json.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.sampled_from(_FIELDS), _json | _b64 | st.lists(st.integers(-3, 10), max_size=5), st.booleans()),
    st.tuples(st.just(("artifact",)), _b64, st.just(False)),  # reaches a worker: random artifact bytes
    st.tuples(st.just(("circuit_id",)), st.from_regex(r"0x[0-9a-f]{64}", fullmatch=True), st.just(False)),  # 404
    st.tuples(st.integers(0, 10_000), st.characters(codec="utf-8")),  # reaches a worker: an edited artifact
)


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_bodies)
def test_fuzzed_bodies_never_get_a_5xx(http, valid_body, raw):
    if isinstance(raw, bytes):
        payload = raw
    else:
        payload = _mutate(valid_body, *raw) if len(raw) == 3 else _edit_artifact(valid_body, *raw)
    response = post(http, payload)
    assert response.status_code < 500, (payload[:200], response.text)
    assert "message" in response.json() or response.status_code == 200


def test_a_pool_of_services_skips_one_that_is_down(service, circuit, honest):
    """--verifier-url A,B: each proof goes to the least busy service; one that does not answer is skipped, so the
    gate's workers keep getting verdicts; with none up, the check fails as VerifierUnavailable (not a verdict)."""
    from concurrent.futures import ThreadPoolExecutor

    from aggregator.verifier.client import VerifierPool, VerifierUnavailable, remote_checker

    slice_, artifact = honest
    arrays = {"W_g": slice_.W_g, "b_g": slice_.b_g, "W_n": slice_.W_n, "b_n": slice_.b_n}
    dead = f"http://127.0.0.1:{free_port()}"
    pool = remote_checker(f"{dead}, {service}", TOKEN)
    assert isinstance(pool, VerifierPool) and len(pool.verifiers) == 2
    with ThreadPoolExecutor(4) as workers:
        verdicts = list(workers.map(lambda _: pool.verify(artifact.to_bytes(), **arrays), range(6)))
    assert all(v.ok for v in verdicts)
    pool.close()
    with pytest.raises(VerifierUnavailable):
        remote_checker(f"{dead},{dead}", TOKEN).verify(artifact.to_bytes(), **arrays)


def test_a_dead_worker_is_replaced(server, http, circuit, honest):
    slice_, artifact = honest
    server[0].config.app.state.workers.pool.submit(os._exit, 1).exception()  # a worker dies (OOM kill, abort)
    response = post(http, body(circuit, artifact, slice_))
    assert response.status_code == 503 and "retry" in response.json()["message"]
    response = post(http, body(circuit, artifact, slice_))  # a fresh pool
    assert response.status_code == 200 and response.json()["ok"] is True


def test_service_is_still_up(http):
    assert http.get("/healthz").json()["ok"] is True


def test_cli_help_and_refusals(tmp_path, circuit, monkeypatch, capsys, caplog):
    with pytest.raises(SystemExit) as exit_:
        serve_main(["--help"])
    assert exit_.value.code == 0 and "--srs-kind" in capsys.readouterr().out
    exported = circuit.export_verifier(tmp_path / "c")
    other_srs = dev_srs(circuit.logrows, tmp_path / "other")  # same size, another file
    monkeypatch.delenv("ZK0_VERIFIER_TOKEN", raising=False)
    base = ["--circuit", str(exported), "--srs", str(circuit.srs.path)]
    refusals = {
        "no bearer token": base + ["--srs-kind", "dev"],
        "built on a DEV SRS": base,  # served as --srs-kind public (the default)
        "none of the --srs files": ["--circuit", str(exported), "--srs", str(other_srs.path), "--srs-kind", "dev"],
        "is not a folder": ["--circuit", str(tmp_path / "missing"), "--srs", str(circuit.srs.path)],
    }
    for words, argv in refusals.items():
        if words != "no bearer token":
            monkeypatch.setenv("ZK0_VERIFIER_TOKEN", "t")
        caplog.clear()
        assert serve_main(argv) == 2, words
        assert words in caplog.text, (words, caplog.text)


# ----------------------------------------------------------------------------------------------- bounds

READ_TIMEOUT, KEEP_ALIVE, IN_FLIGHT = 1.5, 1.0, 2


@pytest.fixture(scope="module")
def bounded(circuit, tmp_path_factory, serve_verifier):
    """A second service with tight bounds, so that the slow-client test takes seconds."""
    with serve_verifier(circuit, tmp_path_factory.mktemp("verifier-bounded"), TOKEN, "--workers", "1",
                        "--read-timeout", str(READ_TIMEOUT), "--keep-alive-timeout", str(KEEP_ALIVE),
                        "--max-in-flight", str(IN_FLIGHT)) as running:
        yield running


def _open(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setblocking(False)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or reset; a response before the EOF is read and dropped)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time, one every ``every`` seconds, until it is sent, refused or ``stop`` is set."""
    for byte in data:
        if stop.wait(every):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:  # the server closed the connection: what the test wants
            return


def _slow_clients(url: str, count: int, stop: threading.Event) -> list[socket.socket]:
    """``count`` connections that hold the service the cheap way: a third send nothing, a third send their headers
    a byte at a time, a third send whole headers (no token) and then a body a byte at a time."""
    host = url.removeprefix("http://")
    headers = f"POST /v1/verify HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    socks = []
    for i in range(count):
        sock = _open(url)
        socks.append(sock)
        if i % 3 == 1:
            data = (headers + "Content-Length: 100\r\n\r\n").encode()
        elif i % 3 == 2:
            sock.sendall((headers + "Content-Length: 100000\r\n\r\n").encode())
            data = b"x" * 100000
        else:
            continue
        threading.Thread(target=_trickle, args=(sock, data, 0.2, stop), daemon=True).start()
    return socks


def _wait_closed(socks: list[socket.socket], timeout: float) -> float:
    """Seconds until the server closed every one of ``socks``; fails after ``timeout``."""
    started, open_ = time.monotonic(), list(socks)
    while open_ and time.monotonic() - started < timeout:
        open_ = [s for s in open_ if not _closed_by_server(s)]
        time.sleep(0.05)
    assert not open_, f"{len(open_)} of {len(socks)} slow connections still open after {timeout:.0f} s"
    return time.monotonic() - started


def test_slow_and_idle_clients_are_cut_off_and_memory_stays_flat(bounded, circuit, honest):
    """Bounded by count (2 waves of 60 connections) and time (each wave cut off within the read timeout plus a
    margin; every trickling thread stops when its connection closes, or when the test ends)."""
    import psutil

    _, url = bounded
    slice_, artifact = honest
    payload = json.dumps(body(circuit, artifact, slice_)).encode()
    process = psutil.Process()
    with httpx.Client(base_url=url, timeout=30) as client:
        assert post(client, payload).json()["ok"] is True  # warm: the worker, the first allocations
    rss, seconds = [process.memory_info().rss], []
    stop = threading.Event()
    try:
        for _ in range(2):
            socks = _slow_clients(url, 60, stop)
            seconds.append(_wait_closed(socks, READ_TIMEOUT + 5))
            for sock in socks:
                sock.close()
            rss.append(process.memory_info().rss)
    finally:
        stop.set()
    print(f"slow clients cut off after {[round(s, 1) for s in seconds]} s; RSS MiB {[r >> 20 for r in rss]}")
    assert all(s < READ_TIMEOUT + 5 for s in seconds)
    assert rss[2] - rss[1] < 8 << 20, rss  # the second wave costs nothing the first did not
    with httpx.Client(base_url=url, timeout=30) as client:  # and the service still answers
        assert post(client, payload).json()["ok"] is True


def test_requests_beyond_the_cap_get_503_with_retry_after(bounded, circuit, honest):
    _, url = bounded
    slice_, artifact = honest
    payload = json.dumps(body(circuit, artifact, slice_)).encode()
    host = url.removeprefix("http://")
    stop = threading.Event()
    holders = []
    try:
        for _ in range(IN_FLIGHT):  # authorised requests whose bodies trickle in: each holds a slot
            sock = _open(url)
            sock.sendall(f"POST /v1/verify HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode())
            threading.Thread(target=_trickle, args=(sock, payload, 0.2, stop), daemon=True).start()
            holders.append(sock)
        time.sleep(0.3)
        with httpx.Client(base_url=url, timeout=30) as client:
            busy = post(client, payload)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
            assert "in flight" in busy.json()["message"]
            assert client.get("/healthz").status_code == 200  # health checks are never turned away
            _wait_closed(holders, READ_TIMEOUT + 5)  # the holders are cut off at the read timeout...
            assert post(client, payload).json()["ok"] is True  # ...and their slots are free again
    finally:
        stop.set()
        for sock in holders:
            sock.close()


def test_idle_keep_alive_connection_is_closed(bounded):
    _, url = bounded
    sock = _open(url)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    closed = _wait_closed([sock], KEEP_ALIVE + 3)
    sock.close()
    assert closed >= KEEP_ALIVE - 0.2  # it answered, kept the connection for the keep-alive time, then closed it
