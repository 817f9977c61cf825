"""A node's contribution: the proof of its update's slice, and its signature over what it sends (DESIGN.md §3).

The round config tells the node the terms (run, round, global hash, circuit id, chain and registry); the node checks
them against what it received, proves the statement on its own data, signs the EIP-712 ``Contribution`` and
replies with a config record holding the proof, the signature and every signed field. ``parse_record`` is the
aggregator's reading of that record (one definition of the wire format).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from contracts import Contribution, circuit_id_of, sign_contribution
from node.errors import UserError
from node.params import as_tensors
from node.so100 import ACTION_DIM
from prover import ProofArtifact, Slice, SliceShape, build_circuit, capture_slice, load_srs, params_hash, prove

log = logging.getLogger(__name__)

SLICE_WEIGHT = "model.action_out_proj.weight"
SLICE_BIAS = "model.action_out_proj.bias"


@dataclass(frozen=True)
class RoundTerms:
    """What the aggregator's round config commits the node to."""

    run_id: str  # the run on the registry: a signature for one run is refused in any other
    round: int
    global_hash: str
    circuit_id: str  # the statement + SRS (prover's id): the node builds it and compares
    circuit_key: str  # the registry's id of its verifying key (circuitIdOf): what the node signs
    chain_id: int
    registry: str
    slice_rows: int
    srs_logrows: int

    @classmethod
    def from_config(cls, config) -> RoundTerms | None:
        """None when the federation runs without proofs (no circuit in the config)."""
        if "circuit-id" not in config:
            return None
        if "run-id" not in config:
            raise UserError("the round config names a circuit but no run id: the aggregator runs another zk0 version")
        if "circuit-key" not in config:
            raise UserError("the round config names no circuit key: the aggregator runs another zk0 version")
        return cls(str(config["run-id"]), int(config["server-round"]), str(config["global-hash"]),
                   str(config["circuit-id"]), str(config["circuit-key"]).lower(),
                   int(config["chain-id"]), str(config["registry"]), int(config["slice-rows"]),
                   int(config["srs-logrows"]))


def slice_shape(policy, rows: int) -> SliceShape:
    """The statement's shape for this policy: SO-100's 6 action dims × the action expert's width × m rows."""
    return SliceShape(actions=ACTION_DIM, hidden=policy.model.action_out_proj.in_features, rows=rows)


@cache
def node_circuit(shape: SliceShape, srs: str, cache_dir: str, logrows: int):
    """The circuit, built locally from the shared statement and SRS (its proving key never travels).

    ``srs`` is ``"dev"`` (a development SRS cached in ``cache_dir``: simulation and tests only) or the path of
    the federation's SRS file for circuits of ``logrows`` rows.
    """
    return build_circuit(shape, srs if srs == "dev" else load_srs(srs, logrows), cache_dir)


def check_pinned(terms: RoundTerms, registry: str | None, chain_id: int | None) -> None:
    """Refuse a round whose registry or chain is not the one this node pinned (``zk0node start --registry
    --chain-id``): its signature counts only where it staked."""
    if registry is not None and terms.registry.lower() != registry.lower():
        raise UserError(f"this round names registry {terms.registry}, but this node signs for {registry} only "
                        "(zk0node start --registry): refusing to sign")
    if chain_id is not None and terms.chain_id != chain_id:
        raise UserError(f"this round names chain {terms.chain_id}, but this node signs for chain {chain_id} only "
                        "(zk0node start --chain-id): refusing to sign")


def check_global(global_arrays: dict[str, np.ndarray], terms_hash: str) -> None:
    """Refuse to train on parameters that are not the ones the round announced."""
    got = params_hash(list(global_arrays.values()))
    if got != terms_hash:
        raise UserError(f"the global parameters received hash to {got}, the round config says {terms_hash}: "
                        "refusing to train on a model that is not this round's")


def round_circuit(bundle, terms: RoundTerms, srs: str, cache_dir: str):
    """This node's build of the round's circuit; refuses to go on when it is not the one the round announced."""
    circuit = node_circuit(slice_shape(bundle.policy, terms.slice_rows), srs, cache_dir, terms.srs_logrows)
    if circuit.circuit_id != terms.circuit_id:
        raise UserError(f"this round's circuit is {terms.circuit_id}, but the statement and SRS this node has "
                        f"give {circuit.circuit_id}: check the SRS file (--srs) and the zk0 version")
    return circuit


def circuit_key(circuit, proof_length: int) -> str:
    """``circuit``'s id on the registry, derived by the node itself from its own verifying key (the VKA), the
    pinned verifier code and its proofs' length: the id it signs, so its proof is judged by this key alone."""
    from prover.evm import REUSABLE_VERIFIER_CODEHASH, circuit_vka

    scales = tuple(int(s) for s in circuit.output_scales[:2])
    return circuit_id_of(REUSABLE_VERIFIER_CODEHASH, circuit_vka(circuit), proof_length, scales)


def check_circuit_key(circuit, terms: RoundTerms, proof_length: int) -> str:
    """The key this node's proof is judged by; refuses a round that names another (a key the node did not
    derive could be one its honest proof fails)."""
    key = circuit_key(circuit, proof_length)
    if key != terms.circuit_key:
        raise UserError(f"this round names circuit key {terms.circuit_key}, but this node's circuit "
                        f"{circuit.circuit_id} has key {key} (its verifying key, proof length and the pinned "
                        "verifier code): refusing to sign a proof for a key it did not derive")
    return key


def capture_update(bundle, dataset, global_arrays: dict, node_arrays: dict, rows: int, seed: int) -> Slice:
    """The statement's inputs: ``rows`` positions of a seeded batch of the node's data, seen by both models, and
    the two models' slices as the aggregator reads them (``slice_reader``)."""
    chunk = bundle.policy.config.chunk_size
    batch_size = 3 * max(1, -(-rows // chunk))  # room for padded steps at episode ends
    gen = torch.Generator().manual_seed(seed)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)))
    read = slice_reader(bundle.policy)
    return capture_slice(bundle.policy, as_tensors(global_arrays), as_tensors(node_arrays),
                         bundle.preprocessor(batch), rows=rows, action_dim=ACTION_DIM, seed=seed,
                         slices=(read(global_arrays), read(node_arrays)))


def prove_update(bundle, dataset, global_arrays: dict, node_arrays: dict, terms: RoundTerms, srs: str,
                 cache_dir: str, seed: int) -> ProofArtifact:
    """Capture the slice with the global model on a batch of the node's data and prove the statement."""
    circuit = round_circuit(bundle, terms, srs, cache_dir)
    artifact = prove(circuit, capture_update(bundle, dataset, global_arrays, node_arrays, terms.slice_rows, seed))
    check_circuit_key(circuit, terms, len(artifact.proof))
    return artifact


def contribution_record(terms: RoundTerms, sent_arrays: dict, artifact: ProofArtifact, signer,
                        address: str | None = None) -> dict:
    """Sign the contribution with ``signer`` and build the reply's ``contribution`` config record.

    ``address`` is the identity the node claims (its wallet's address, which is ``signer``'s when honest).
    """
    c = Contribution(terms.run_id, terms.round, terms.global_hash, params_hash(list(sent_arrays.values())),
                     artifact.proof_hash, artifact.data_commitment, artifact.loss_before, artifact.loss_after,
                     terms.circuit_key)
    signature = sign_contribution(signer, c, terms.chain_id, terms.registry)
    return {"address": address or signer.address, "signature": bytes(signature), "proof": artifact.to_bytes(),
            "run-id": c.run_id, "round": c.round, "global-hash": c.global_hash, "update-hash": c.update_hash,
            "proof-hash": c.proof_hash, "data-commitment": c.data_commitment, "loss-before": c.loss_before,
            "loss-after": c.loss_after, "circuit-key": c.circuit_key}


def parse_record(record: dict) -> tuple[Contribution, str, bytes, bytes]:
    """A reply's contribution record → (Contribution, claimed address, signature, proof artifact bytes).

    Raises ``ValueError`` saying what is wrong: the record comes from an untrusted node.
    """
    try:
        c = Contribution(str(record["run-id"]), int(record["round"]), str(record["global-hash"]),
                         str(record["update-hash"]), str(record["proof-hash"]), str(record["data-commitment"]),
                         float(record["loss-before"]), float(record["loss-after"]), str(record["circuit-key"]))
        address, signature, proof = str(record["address"]), record["signature"], record["proof"]
    except KeyError as err:
        raise ValueError(f"contribution record lacks {err}") from None
    except (TypeError, ValueError, OverflowError) as err:  # OverflowError: int() of an infinite float
        raise ValueError(f"contribution record has a bad field: {err}") from None
    if not isinstance(signature, bytes) or not isinstance(proof, bytes):
        raise ValueError("contribution signature and proof must be bytes")
    return c, address, signature, proof


def slice_of(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(W, b): the rows of ``action_out_proj`` the statement covers, from a parameter set."""
    return arrays[SLICE_WEIGHT][:ACTION_DIM], arrays[SLICE_BIAS][:ACTION_DIM]


def slice_reader(policy) -> Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """How a parameter set of ``policy``'s federation gives the statement's (W, b): ``slice_of``, or in LoRA mode
    the effective weights from the fixed base and A and the set's B (``node.lora.LoraSlice``). The node proves and
    the aggregator binds with the same reader."""
    from node.lora import is_lora, lora_slice

    return lora_slice(policy) if is_lora(policy) else slice_of


def wallet_account(path: str | Path):
    """The node's account from its keystore; the password comes from ZK0_WALLET_PASSWORD or a file, never argv."""
    from contracts import resolve_password

    return _account(str(path), resolve_password(prompt=False))


@cache
def _account(path: str, password: str):
    from contracts import load_account

    return load_account(path, password)
