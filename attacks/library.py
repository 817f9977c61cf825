"""The attack library: what an attacker changes in an honest node's round, one pure piece per step.

Each attack is a change of the honest round's pieces: the data trained on, the arrays sent, the parameters and
the witness proven, the proof artifact, or the key that signs (``attacks.round`` puts them together with the
honest node's own steps). Which gate should stop each one, and what the evaluation
(``scripts/eval_attacks.py``) measured, is in docs/security.md.

Model-poisoning attacks (sign-flip, scale, noise, alie, ipm, collude) keep the proven rows of the slice at the
node's honest values: a valid proof needs them, and the rest of the update is what only Krum and the server
evaluation can judge. ``seed`` is the round's training seed, the same on every node of a round, so attackers that
draw from it (noise, collude) draw the same numbers without talking to each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch

from node.contribution import SLICE_BIAS, SLICE_WEIGHT
from node.so100 import ACTION_DIM
from prover import ProofArtifact, Slice

log = logging.getLogger(__name__)

ALIE_Z = 1.0  # "a little is enough": how many (estimated) standard deviations to shift each coordinate
IPM_EPSILON = 0.1  # inner-product manipulation: small ε is the setting that defeats Krum in Xie et al. (2019)
COLLUDE_SIGMA = 2e-3  # colluders' shared perturbation: about the size of an honest 5-step update per coordinate
FREE_RIDER_SIGMA = 1e-3  # a free-rider's "tiny noise": a few fixed-point steps (1.2e-4) of the circuit
SYBIL_SIGMA = 1e-5  # a near-copy's noise: a few ‰ of an honest update, so it still scores as the original does
CRASH_ROUND = 2  # the crashing node trains in round 1 and dies after training from this round on
_COLLUDE_TAG = 0x2C011DE  # mixed into the shared seed so colluders' draws differ from the noise attack's

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
    "alie": f"'a little is enough': sends θ_g + Δ − z·|Δ| (z = {ALIE_Z}, |Δ| its estimate of the honest spread) "
            "outside the proven slice",
    "ipm": f"inner-product manipulation: sends θ_g − ε·Δ (ε = {IPM_EPSILON}) outside the proven slice",
    "poison-negate": "trains and proves on its own data with every action negated (data poisoning)",
    "poison-shuffle": "trains and proves on its own data with actions shuffled across frames (data poisoning)",
    "collude": f"sends θ_g + a perturbation (σ = {COLLUDE_SIGMA}) drawn from a seed all colluders share: every "
               "colluder sends the same arrays outside its proven slice",
    "free-rider-noise": f"sends the global model plus tiny noise (σ = {FREE_RIDER_SIGMA}) everywhere, and proves "
                        "that slice",
    "crash": f"dies after training from round {CRASH_ROUND} on: the aggregator gets an error instead of a reply",
    "fabricate-witness": "sends θ_g − Δ everywhere (the proven slice included) and proves it on fabricated witnesses "
                         "(Y := X_n·W_nᵀ + b_n, X_g := X_n + 1): proven loss_after 0, loss_before large",
    "fabricate-free-rider": f"sends the global model plus tiny noise (σ = {FREE_RIDER_SIGMA}) everywhere and proves a "
                            "fabricated improvement (the same fabricated witnesses)",
    "sybil-copy": "a second wallet of node 0's owner: trains on node 0's data with the round's seed and sends the "
                  "same update (its own proof of it)",
    "sybil-near-copy": f"as sybil-copy, plus noise of its own (σ = {SYBIL_SIGMA}) outside the proven slice: a "
                       "near-copy no hash catches",
}
POISON = ("poison-negate", "poison-shuffle")
FREE_RIDERS = ("free-rider", "free-rider-noise")
FABRICATE = ("fabricate-witness", "fabricate-free-rider")
COPIERS = ("sybil-copy", "sybil-near-copy")  # they run on node 0's dataset (the demo gives it to them)


class NodeCrashed(RuntimeError):
    """The 'crash' attack: the node dies mid-round (its ClientApp raises, so Flower replies with an error)."""


def _is_slice(name: str) -> bool:
    return name in (SLICE_WEIGHT, SLICE_BIAS)


def _outside_slice(global_arrays: dict, node_arrays: dict, fn) -> dict:
    """Apply ``fn(g, n) -> sent`` to every parameter, keeping the proven rows of the slice at the node's values."""
    sent = {}
    for name, n in node_arrays.items():
        out = np.asarray(fn(global_arrays[name], n), dtype=np.float32)
        if _is_slice(name):
            out[:ACTION_DIM] = n[:ACTION_DIM]
        sent[name] = out
    return sent


class PoisonedDataset(torch.utils.data.Dataset):
    """A node's dataset with corrupted actions: what a data-poisoning node trains on and commits to.

    ``negate`` flips the sign of every action (the arm is taught to move the other way); ``shuffle`` gives each
    frame the action chunk of another frame (a fixed permutation from ``seed``), so actions no longer follow the
    observations. Everything else about the frame (images, state, task) is the node's real data.
    """

    def __init__(self, dataset, mode: str, seed: int = 0) -> None:
        if mode not in ("negate", "shuffle"):
            raise ValueError(f"unknown poisoning mode {mode!r}")
        self.dataset, self.mode = dataset, mode
        self.perm = np.random.default_rng(seed).permutation(len(dataset))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        item = dict(self.dataset[idx])
        if self.mode == "negate":
            item["action"] = -item["action"]
        else:
            other = self.dataset[int(self.perm[idx])]
            for key in ("action", "action_is_pad"):
                if key in other:
                    item[key] = other[key]
        return item

    def __getattr__(self, name: str):  # meta, features, ... as the wrapped LeRobotDataset has them
        if name in ("dataset", "mode", "perm"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


@dataclass(frozen=True)
class Attack:
    """One node's attack (``kind``), or an honest node (``kind=None``)."""

    kind: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in ATTACKS:
            raise ValueError(f"unknown adversary {self.kind!r}: choose one of {', '.join(ATTACKS)}")

    @property
    def replays(self) -> bool:
        return self.kind == "replay"

    def dataset(self, dataset):
        """The data the node trains on and proves with (data poisoning corrupts its actions)."""
        if self.kind not in POISON:
            return dataset
        log.warning("adversary %s: training on corrupted actions", self.kind)
        return PoisonedDataset(dataset, self.kind.removeprefix("poison-"))

    def check_alive(self, server_round: int) -> None:
        """The crashing node dies here (after training, before replying) from round ``CRASH_ROUND`` on."""
        if self.kind == "crash" and server_round >= CRASH_ROUND:
            raise NodeCrashed(f"adversary 'crash': node died mid-round {server_round}")

    def proven(self, global_arrays: dict, node_arrays: dict, sent: dict | None = None) -> dict:
        """The parameters the node proves its slice from (free-riders prove what they send)."""
        if self.kind == "free-rider":
            return global_arrays
        if self.kind == "free-rider-noise" or self.kind in FABRICATE:
            return sent if sent is not None else self.sent(global_arrays, node_arrays, 0)
        return node_arrays

    def witness(self, slice_: Slice) -> Slice:
        """The statement's inputs the node proves on. X_g, X_n and Y are the node's free choice (docs/trust-model.md):
        fabricators take as targets what their own slice outputs (loss_after = 0) and shift the global model's
        features by one (so loss_before is large even when the sent model is the global one)."""
        if self.kind not in FABRICATE:
            return slice_
        return replace(slice_, X_g=slice_.X_n + 1.0, Y=slice_.X_n @ slice_.W_n.T + slice_.b_n)

    def sent(self, global_arrays: dict, node_arrays: dict, seed: int) -> dict:
        """The parameters the node sends."""
        rng = np.random.default_rng(seed)
        if self.kind == "sign-flip":
            return _outside_slice(global_arrays, node_arrays, lambda g, n: g - (n - g))
        if self.kind == "scale":
            return _outside_slice(global_arrays, node_arrays, lambda g, n: g + 10 * (n - g))
        if self.kind == "noise":
            return _outside_slice(global_arrays, node_arrays, lambda g, n: n + rng.normal(0, 0.1, n.shape))
        if self.kind == "alie":
            # Mean − z·std of the honest updates, estimated from the one update this node has: its own Δ as the
            # mean and |Δ| as the per-coordinate spread (non-IID honest updates differ by about their own size).
            return _outside_slice(global_arrays, node_arrays, lambda g, n: n - ALIE_Z * np.abs(n - g))
        if self.kind == "ipm":
            return _outside_slice(global_arrays, node_arrays, lambda g, n: g - IPM_EPSILON * (n - g))
        if self.kind == "collude":
            shared = np.random.default_rng([_COLLUDE_TAG, seed])  # same draws on every colluder, in name order
            crafted = {name: g + shared.normal(0, COLLUDE_SIGMA, g.shape) for name, g in global_arrays.items()}
            return _outside_slice(crafted, node_arrays, lambda c, n: c)
        if self.kind == "free-rider":
            return {k: v.copy() for k, v in global_arrays.items()}
        if self.kind in ("free-rider-noise", "fabricate-free-rider"):
            return {k: (g + rng.normal(0, FREE_RIDER_SIGMA, g.shape)).astype(np.float32)
                    for k, g in global_arrays.items()}
        if self.kind == "sybil-near-copy":  # fresh draws: each copier its own noise, nobody's seed
            fresh = np.random.default_rng()
            return _outside_slice(global_arrays, node_arrays, lambda g, n: n + fresh.normal(0, SYBIL_SIGMA, n.shape))
        if self.kind == "fabricate-witness":
            return {k: (g - (node_arrays[k] - g)).astype(np.float32) for k, g in global_arrays.items()}
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



def synthetic_updates(rng: np.random.Generator, d: int, n_honest: int, kind: str, n_attackers: int) -> np.ndarray:
    """One round's updates (rows, float32) around θ_g = 0, for measuring a robust aggregator without training:
    non-IID honest Δ_i = a common direction + one of their own + noise of their own scale, then the attackers'
    updates made by ``Attack(kind).sent`` from the first honest ones (``poison-shuffle``, a data attack: an update
    of honest size in an unrelated direction). Used by scripts/bench_scale.py and tests/unit/test_sketch.py."""
    common = rng.normal(0, 1e-3, d)
    honest = [common + rng.normal(0, 1e-3, d) + rng.normal(0, 3e-4) * rng.normal(0, 1, d) for _ in range(n_honest)]
    global_ = {"w": np.zeros(d, np.float32)}
    attackers = []
    for j in range(n_attackers):
        if kind == "poison-shuffle":
            attackers.append(rng.normal(0, np.linalg.norm(honest[j]) / np.sqrt(d), d))
        else:
            attackers.append(Attack(kind).sent(global_, {"w": honest[j].astype(np.float32)}, seed=11)["w"])
    return np.stack([*honest, *attackers]).astype(np.float32)
