"""Client-side DP on the real node round: the tiny SmolVLA trains, clips and noises its update, proves with real EZKL
and signs what it sends; the real gate (signature, integrity, proof, binding, improvement, validation) verifies it.

The noise is drawn from a seeded generator here (``dp_rng``) so the test repeats; a node draws it from OS entropy.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from aggregator.protocol.gate import VERIFIED, VERIFIED_CHECKS, Gate, RoundContext
from aggregator.protocol.verification import LocalProofChecker
from contracts import create_keystore
from node.contribution import RoundTerms, contribution_record, node_circuit, slice_shape, wallet_account
from node.dp import DPConfig, clip_update
from node.params import pack, unpack
from node.train import snapshot
from prover import ProofArtifact, params_hash

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
RUN = "0x" + "d9" * 32  # the run id the aggregator would have picked
CHAIN_ID, ROWS, PASSWORD = 31337, 16, "dp-test-only"
DP = DPConfig.for_epsilon(8.0, rounds=3)  # the demo's --dp-epsilon 8 over 3 rounds, C = 0.01


@pytest.fixture(scope="module")
def noised_round(synthetic, cache_dir, tmp_path_factory):
    """Node 0's round 1 with DP: the round config, its reply, the global and the clean trained model, and what the
    gate needs (circuit, wallet, the validation set)."""
    from aggregator.protocol.validation import ValidationConfig, Validator
    from aggregator.protocol.verification import registry_circuit_id
    from node.client_app import NodeSetup, load_node, train_round
    from node.datasets import load_dataset

    wallet = tmp_path_factory.mktemp("dp-wallet") / "node.json"
    create_keystore(wallet, PASSWORD)
    os.environ["ZK0_WALLET_PASSWORD"] = PASSWORD  # the node reads it from the environment, never argv
    node = load_node(NodeSetup(dataset=synthetic.nodes[0], cache_dir=str(cache_dir), wallet=str(wallet)))
    circuit = node_circuit(slice_shape(node.bundle.policy, ROWS), "dev", str(cache_dir), 15)
    glob = snapshot(node.bundle.policy)
    config = ConfigRecord({"server-round": 1, "global-hash": params_hash(list(glob.values())),
                           "circuit-id": circuit.circuit_id, "circuit-key": registry_circuit_id(circuit),
                           "chain-id": CHAIN_ID, "registry": REGISTRY,
                           "run-id": RUN, "slice-rows": ROWS, "srs-logrows": circuit.srs.logrows, "local-steps": 5,
                           "batch-size": 8, "learning-rate": 1e-3, "proximal-mu": 0.01, "seed": 0, **DP.round_config()})
    content = train_round(node, RecordDict({**pack(glob), "config": config}),
                          dp_rng=np.random.default_rng(11))
    validation = load_dataset(synthetic.validation, delta_timestamps=node.dataset.delta_timestamps)
    return {"config": config, "content": content, "global": glob, "circuit_key": config["circuit-key"],
            "clean": snapshot(node.bundle.policy),  # the policy still holds the trained, un-noised parameters
            "checker": LocalProofChecker(circuit), "account": wallet_account(wallet),
            "validator": Validator(node.bundle, validation, ValidationConfig(2, 8, 1), seed=0)}


def gate(setup: dict, content: RecordDict):
    """The aggregator's gate for round 1, with the federation's default ρ and τ."""
    glob = setup["global"]
    ctx = RoundContext(1, glob, params_hash(list(glob.values())), chain_id=CHAIN_ID, registry=REGISTRY, run_id=RUN,
                       circuit_key=setup["circuit_key"], is_approved=lambda a: a == setup["account"].address,
                       verifier=setup["checker"],
                       rise_tolerance=0.25, harm_tolerance=0.1)
    ctx.validation = setup["validator"].open(1, glob)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 0, 7
    return Gate(list(VERIFIED_CHECKS))(Message(content, dst_node_id=0, message_type="train"), ctx)[1]


def test_noised_honest_reply_passes_the_gate_and_the_proof_binds_the_noised_update(noised_round):
    glob, clean, content = noised_round["global"], noised_round["clean"], noised_round["content"]
    sent = unpack(content["arrays"], content["layout"])
    # What is sent is θ_g + clip(Δ, C) + noise of std σ·C on every coordinate, not the trained model.
    clipped = clip_update(glob, clean, DP.clip)
    noise = np.concatenate([(sent[k].astype(np.float64) - glob[k] - clipped[k]).ravel() for k in glob])
    assert noise.size > 100_000 and noise.std() == pytest.approx(DP.noise_std, rel=0.02)
    assert content["metrics"]["dp_epsilon"] == pytest.approx(DP.epsilon(1))
    assert content["contribution"]["update-hash"] == params_hash(list(sent.values()))  # signed: the noised update

    outcome = gate(noised_round, content)
    assert outcome.status == VERIFIED, outcome.detail
    assert outcome.dp_epsilon == pytest.approx(DP.epsilon(1)) and outcome.score > -0.1

    # The proof is over the noised slice: the clean model, signed with the same proof, does not bind to it.
    artifact = ProofArtifact.from_bytes(content["contribution"]["proof"])
    resigned = contribution_record(RoundTerms.from_config(noised_round["config"]), clean, artifact,
                                   noised_round["account"])
    swapped = RecordDict({**pack(clean), "metrics": content["metrics"],
                          "contribution": ConfigRecord(resigned)})
    assert gate(noised_round, swapped).status == "UNBOUND"
