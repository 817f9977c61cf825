"""Client of the verifier service (``aggregator.verifier.service``): the same ``verify`` as the in-process check.

``RemoteVerifier.verify`` returns the very ``prover.Verdict`` that ``prover.verify`` would, so the gate cannot tell
the two apart. Failures are split by whose they are: ``VerifierUnavailable`` when the service cannot answer
(connection refused, timeout, 5xx, a garbled answer: fall back or retry), ``VerifierRequestError`` when it refused
the request (4xx: a wrong token, a circuit it does not hold, slices of the wrong shape — retrying will not help).
"""

from __future__ import annotations

import logging
import threading

import httpx
import numpy as np
from pydantic import BaseModel, ValidationError

from aggregator.verifier.wire import CircuitInfo, CircuitList, ErrorBody, Health, VerdictBody, VerifyRequest
from prover import BAD_PROOF, Verdict

log = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 256 * 1024  # ~40× an honest artifact; keeps requests under the service's 1 MiB default


class VerifierError(RuntimeError):
    """Base of the client's errors."""


class VerifierUnavailable(VerifierError):
    """The service did not answer usefully: connection error, timeout, 5xx or an unreadable answer."""


class VerifierRequestError(VerifierError, ValueError):
    """The service refused the request (4xx); ``status`` and the service's ``message`` say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"verifier refused the request ({status}): {message}")
        self.status, self.message = status, message


class RemoteVerifier:
    """A verifier service at ``url``. Thread-safe (one pooled ``httpx.Client``); close it, or use ``with``.

    ``circuit_id`` is the round's circuit (the aggregator knows it); left out, it is the one circuit the service
    holds. Artifacts over ``max_artifact_bytes`` are answered ``BAD_PROOF`` here, without a request: a node must
    not be able to make the service refuse the request (413) instead of rejecting its proof.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0, circuit_id: str | None = None,
                 max_artifact_bytes: int = MAX_ARTIFACT_BYTES) -> None:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.url, self.max_artifact_bytes = url, max_artifact_bytes
        self._circuit_id = circuit_id.lower() if circuit_id else None

    @property
    def circuit_id(self) -> str:
        if self._circuit_id is None:
            circuits = self.circuits()
            if len(circuits) != 1:
                raise VerifierError(f"the verifier at {self.url} holds {len(circuits)} circuits: pass circuit_id")
            self._circuit_id = circuits[0].circuit_id
        return self._circuit_id

    def verify(self, artifact: bytes, W_g: np.ndarray, b_g: np.ndarray, W_n: np.ndarray,  # noqa: N803
               b_n: np.ndarray) -> Verdict:  # fmt: skip
        """``prover.verify(artifact, <the service's Verifier>, W_g, b_g, W_n, b_n)``, run by the service.

        Like ``prover.verify``, raises ``ValueError`` for slices the circuit cannot take (wrong shape, here also
        NaN or infinity, refused before any request).
        """
        if len(artifact) > self.max_artifact_bytes:
            message = f"proof artifact of {len(artifact)} bytes is over the limit of {self.max_artifact_bytes}"
            log.info("proof rejected: %s (%s)", BAD_PROOF, message)
            return Verdict(ok=False, reason=BAD_PROOF, message=message)
        body = VerifyRequest.build(self.circuit_id, bytes(artifact), W_g, b_g, W_n, b_n)
        answer = self._request("POST", "/v1/verify", VerdictBody, content=body.model_dump_json())
        log.debug("remote verdict %s in %.3f s", answer.reason or "OK", answer.seconds)
        return answer.verdict()

    def circuit(self, circuit_id: str) -> CircuitInfo:
        """What the service says circuit ``circuit_id`` is (``VerifierRequestError`` 404 if it does not hold it)."""
        return self._request("GET", f"/v1/circuits/{circuit_id}", CircuitInfo)

    def circuits(self) -> list[CircuitInfo]:
        return self._request("GET", "/v1/circuits", CircuitList).circuits

    def health(self) -> Health:
        return self._request("GET", "/healthz", Health)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteVerifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request[M: BaseModel](self, method: str, path: str, model: type[M], content: str | None = None) -> M:
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as err:
            raise VerifierUnavailable(f"verifier at {self.url} unreachable ({type(err).__name__}: {err})") from err
        if response.status_code >= 500:
            raise VerifierUnavailable(f"verifier at {self.url} failed ({response.status_code}): {_message(response)}")
        if response.status_code >= 400:
            raise VerifierRequestError(response.status_code, _message(response))
        try:
            return model.model_validate_json(response.content)
        except ValidationError as err:
            raise VerifierUnavailable(f"verifier at {self.url} gave an unreadable answer to {path}: {err}") from err


def _message(response: httpx.Response) -> str:
    try:
        return ErrorBody.model_validate_json(response.content).message
    except ValidationError:
        return response.text[:200] or response.reason_phrase


class VerifierPool:
    """Several verifier services behind one aggregator (``--verifier-url A,B,...``): each proof goes to the service
    with the fewest checks in flight from here; one that is unavailable is skipped for the others (the verdict is
    the same whichever service gives it). The gate's workers call ``verify`` from several threads at once."""

    def __init__(self, verifiers: list[RemoteVerifier]) -> None:
        if not verifiers:
            raise ValueError("a verifier pool needs at least one service")
        self.verifiers = verifiers
        self._busy = [0] * len(verifiers)
        self._lock = threading.Lock()

    def verify(self, artifact: bytes, W_g: np.ndarray, b_g: np.ndarray, W_n: np.ndarray,  # noqa: N803
               b_n: np.ndarray) -> Verdict:  # fmt: skip
        with self._lock:
            order = sorted(range(len(self.verifiers)), key=lambda i: self._busy[i])
        last: VerifierUnavailable | None = None
        for i in order:
            with self._lock:
                self._busy[i] += 1
            try:
                return self.verifiers[i].verify(artifact, W_g, b_g, W_n, b_n)
            except VerifierUnavailable as err:
                log.warning("verifier %s unavailable, trying another: %s", self.verifiers[i].url, err)
                last = err
            finally:
                with self._lock:
                    self._busy[i] -= 1
        raise last

    def close(self) -> None:
        for verifier in self.verifiers:
            verifier.close()


def remote_checker(urls: str, token: str | None = None) -> RemoteVerifier | VerifierPool:
    """The proof checker for ``urls``: one service, or a pool of several (comma-separated, one token)."""
    parts = [u.strip() for u in urls.split(",") if u.strip()]
    if len(parts) == 1:
        return RemoteVerifier(parts[0], token)
    return VerifierPool([RemoteVerifier(u, token) for u in parts])


def check_services(urls: str, token: str | None = None, timeout: float = 10.0) -> None:
    """Each service in ``urls`` answers, and accepts ``token`` when one is given (its circuit list needs it; without
    one, its health check): a wrong URL or token is refused when the aggregator starts or a run begins, in one line,
    instead of failing every proof of round 1."""
    from node.errors import UserError

    for url in [u.strip() for u in urls.split(",") if u.strip()]:
        with RemoteVerifier(url, token, timeout=timeout) as service:
            try:
                service.circuits() if token else service.health()
            except VerifierRequestError as err:
                raise UserError(f"the verifier at {url} refuses this token ({err}): give its token") from None
            except VerifierError as err:
                raise UserError(f"{err}: start the verifier (zk0agg verifier serve) or fix its URL") from None
