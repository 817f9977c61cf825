"""Adversarial nodes: what an attacker changes in an honest node's round, as a node configuration.

The same attacks run in simulation and under a real SuperNode (``zk0node start --adversary KIND`` exists for
testing only). Each attack is a pure change of the honest round's pieces: the arrays sent, the slice proven, the
proof artifact, or the key that signs. Which gate should stop each one is in docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from node.contribution import SLICE_BIAS, SLICE_WEIGHT
from node.so100 import ACTION_DIM
from prover import ProofArtifact

ATTACKS: dict[str, str] = {
    "sign-flip": "sends θ_g − Δ outside the proven slice (the slice itself stays honest, so its proof is valid)",
    "scale": "sends θ_g + 10·Δ outside the proven slice",
    "noise": "adds Gaussian noise (σ = 0.1) to every parameter outside the proven slice",
    "free-rider": "sends the global model back unchanged, with a proof of its (non-)improvement",
    "forge-proof": "claims a lower loss_after than it proved (edits the proof's public output)",
    "proof-swap": "proves its honest slice but sends a different one (scaled ×10)",
    "replay": "from round 2 on, re-sends its reply of the previous round",
    "bad-signature": "signs with a key that is not its approved wallet, claiming the wallet's address",
    "malformed": "sends a NaN in its parameters",
}


def _is_slice(name: str) -> bool:
    return name in (SLICE_WEIGHT, SLICE_BIAS)


def _outside_slice(global_arrays: dict, node_arrays: dict, fn) -> dict:
    """Apply ``fn(g, n) -> sent`` to every parameter, keeping the proven rows of the slice at the node's values."""
    sent = {}
    for name, n in node_arrays.items():
        out = fn(global_arrays[name], n).astype(np.float32)
        if _is_slice(name):
            out[:ACTION_DIM] = n[:ACTION_DIM]
        sent[name] = out
    return sent


@dataclass(frozen=True)
class Attack:
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in ATTACKS:
            raise ValueError(f"unknown adversary {self.kind!r}: choose one of {', '.join(ATTACKS)}")

    @property
    def replays(self) -> bool:
        return self.kind == "replay"

    def proven(self, global_arrays: dict, node_arrays: dict) -> dict:
        """The parameters the node proves its slice from."""
        return global_arrays if self.kind == "free-rider" else node_arrays

    def sent(self, global_arrays: dict, node_arrays: dict, seed: int) -> dict:
        """The parameters the node sends."""
        rng = np.random.default_rng(seed)
        if self.kind == "sign-flip":
            return _outside_slice(global_arrays, node_arrays, lambda g, n: g - (n - g))
        if self.kind == "scale":
            return _outside_slice(global_arrays, node_arrays, lambda g, n: g + 10 * (n - g))
        if self.kind == "noise":
            return _outside_slice(global_arrays, node_arrays, lambda g, n: n + rng.normal(0, 0.1, n.shape))
        if self.kind == "free-rider":
            return {k: v.copy() for k, v in global_arrays.items()}
        if self.kind == "proof-swap":
            sent = {k: v.copy() for k, v in node_arrays.items()}
            for name in (SLICE_WEIGHT, SLICE_BIAS):
                g, n = global_arrays[name][:ACTION_DIM], node_arrays[name][:ACTION_DIM]
                sent[name][:ACTION_DIM] = g + 10 * (n - g) + 0.01
            return sent
        if self.kind == "malformed":
            sent = {k: v.copy() for k, v in node_arrays.items()}
            first = next(iter(sent))
            sent[first].flat[0] = np.nan
            return sent
        return node_arrays

    def artifact(self, artifact: ProofArtifact) -> ProofArtifact:
        """The proof artifact the node sends (forge-proof claims a lower loss than it proved)."""
        if self.kind != "forge-proof":
            return artifact
        from dataclasses import replace

        # Claim half the proven loss_before as loss_after: a big, fake improvement (instances are little-endian
        # field elements at the output scale, so halving the element halves the value).
        before = int.from_bytes(bytes.fromhex(artifact.instances[0]), "little")
        forged = (before // 2).to_bytes(32, "little").hex()
        return replace(artifact, instances=(artifact.instances[0], forged), loss_after=artifact.loss_before / 2)

    def signer(self, account):
        """The key that signs (bad-signature signs with a fresh key it does not own on chain)."""
        if self.kind != "bad-signature":
            return account
        from eth_account import Account

        return Account.create()
