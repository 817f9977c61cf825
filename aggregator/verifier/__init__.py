"""The proof verifier as a service: its HTTP server (``service``, ``zk0agg verifier serve``), the client the gate
calls (``client``), and the JSON wire format both speak (``wire``). The check itself is ``prover.verify``.

Face: ``remote_checker`` and ``VerifierPool`` (the client side). The server is imported where it is served
(``aggregator.verifier.service.serve_main``), so a client does not load the web framework.
"""

from aggregator.verifier.client import RemoteVerifier, VerifierPool, VerifierUnavailable, remote_checker

__all__ = ["RemoteVerifier", "VerifierPool", "VerifierUnavailable", "remote_checker"]
