"""LoRA mode (node/lora.py) end to end: nodes train and send adapters, everything downstream works on them.

First one node's round with the tiny SmolVLA at rank 4, DP on (clipped and noised adapters), its real EZKL proof
over ``action_out_proj``'s effective weights and the real gate (signature, integrity, proof and binding, improvement,
validation score). Then a verified federation in LoRA mode (real Flower, EZKL, anvil; two honest nodes and one
that forges its proof, two rounds) whose adapters are selected, recorded on chain, checkpointed in LeRobot's PEFT
format, released (with the merged model on request) and checked by ``zk0agg verify-model``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from aggregator.protocol.gate import VERIFIED, VERIFIED_CHECKS, Gate, RoundContext
from aggregator.protocol.verification import LocalProofChecker
from contracts import create_keystore
from node.contribution import node_circuit, slice_reader, slice_shape, wallet_account
from node.dp import DPConfig, clip_update
from node.lora import OUT_PROJ, effective_weight, round_config
from node.params import get_trainable, pack, unpack
from node.so100 import ACTION_DIM
from prover import params_hash

pytestmark = pytest.mark.timeout(2400)

RANK = 4
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
RUN = "0x" + "1a" * 32
CHAIN_ID, ROWS, PASSWORD = 31337, 16, "lora-test-only"
DP = DPConfig(clip=0.05, noise_multiplier=0.5)


@pytest.fixture(scope="module")
def lora_round(synthetic, cache_dir, tmp_path_factory):
    """Node 0's round 1 in LoRA mode with DP: its reply, the global and the clean trained adapters, and the gate's
    round context (circuit, wallet, validation set)."""
    from aggregator.protocol.validation import ValidationConfig, Validator
    from aggregator.protocol.verification import registry_circuit_id
    from node.client_app import NodeSetup, load_node, train_round
    from node.datasets import load_dataset

    wallet = tmp_path_factory.mktemp("lora-wallet") / "node.json"
    create_keystore(wallet, PASSWORD)
    os.environ["ZK0_WALLET_PASSWORD"] = PASSWORD
    node = load_node(NodeSetup(dataset=synthetic.nodes[0], cache_dir=str(cache_dir), wallet=str(wallet),
                               lora_rank=RANK))
    policy = node.bundle.policy
    circuit = node_circuit(slice_shape(policy, ROWS), "dev", str(cache_dir), 15)
    glob = get_trainable(policy)
    config = ConfigRecord({"server-round": 1, "global-hash": params_hash(list(glob.values())),
                           "circuit-id": circuit.circuit_id, "circuit-key": registry_circuit_id(circuit),
                           "chain-id": CHAIN_ID, "registry": REGISTRY, "run-id": RUN, "slice-rows": ROWS,
                           "srs-logrows": circuit.srs.logrows, "local-steps": 10, "batch-size": 8,
                           "learning-rate": 1e-2, "proximal-mu": 0.0, "seed": 0, **DP.round_config(),
                           **round_config(policy, RANK)})
    content = train_round(node, RecordDict({**pack(glob), "config": config}), dp_rng=np.random.default_rng(3))
    validation = load_dataset(synthetic.validation, delta_timestamps=node.dataset.delta_timestamps)
    validator = Validator(node.bundle, validation, ValidationConfig(2, 8, 1), seed=0)
    account = wallet_account(wallet)

    def gate(reply: RecordDict):
        ctx = RoundContext(1, glob, config["global-hash"], chain_id=CHAIN_ID, registry=REGISTRY, run_id=RUN,
                           circuit_key=config["circuit-key"], is_approved=lambda a: a == account.address,
                           verifier=LocalProofChecker(circuit), read_slice=slice_reader(policy),
                           rise_tolerance=0.25, harm_tolerance=0.1)
        ctx.validation = validator.open(1, glob)
        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 0, 7
        return Gate(list(VERIFIED_CHECKS))(Message(reply, dst_node_id=0, message_type="train"), ctx)[1]

    return {"node": node, "config": config, "content": content, "global": glob, "gate": gate,
            "clean": get_trainable(policy)}  # the policy still holds the trained, un-noised adapters


def test_lora_node_sends_only_adapter_bs_clipped_and_noised(lora_round):
    node, glob, content, clean = lora_round["node"], lora_round["global"], lora_round["content"], lora_round["clean"]
    sent = unpack(content["arrays"], content["layout"])
    expert = sum(p.numel() for n, p in node.bundle.policy.named_parameters() if "lm_expert" in n)
    assert list(sent) == list(glob) and all(".lora_B." in name for name in sent)
    assert sum(a.size for a in sent.values()) < expert / 20  # a few thousand values: the adapters' B's alone
    assert all(not np.any(glob[name]) for name in glob)  # B starts at zero (PEFT's init): the base is the model
    # DP on the adapters: θ_g + clip(Δ, C) + N(0, σ²C²)
    clipped = clip_update(glob, clean, DP.clip)
    assert np.sqrt(sum(float((c ** 2).sum()) for c in clipped.values())) <= DP.clip * (1 + 1e-6)
    noise = np.concatenate([(sent[k].astype(np.float64) - glob[k] - clipped[k]).ravel() for k in glob])
    assert noise.std() == pytest.approx(DP.noise_std, rel=0.1)
    assert content["contribution"]["update-hash"] == params_hash(list(sent.values()))  # signed: the adapters


def test_lora_slice_is_the_layers_effective_weights(lora_round):
    """The statement's W_n = W_base + s·B_n·A is exactly what the LoRA layer computes (to float rounding)."""
    node, content = lora_round["node"], lora_round["content"]
    sent = unpack(content["arrays"], content["layout"])
    layer = node.bundle.policy.model.action_out_proj
    weight, bias = slice_reader(node.bundle.policy)(sent)
    b = sent[f"{OUT_PROJ}.lora_B.default.weight"][:ACTION_DIM]
    np.testing.assert_array_equal(weight, effective_weight(layer.base_layer.weight.detach().numpy()[:ACTION_DIM],
                                                           layer.lora_A["default"].weight.detach().numpy(), b,
                                                           layer.scaling["default"]))
    x = torch.randn(5, layer.in_features)
    saved = layer.lora_B["default"].weight.detach().clone()
    with torch.no_grad():
        layer.lora_B["default"].weight.copy_(torch.from_numpy(np.array(sent[f"{OUT_PROJ}.lora_B.default.weight"])))
        out = layer(x)[:, :ACTION_DIM].numpy()
        layer.lora_B["default"].weight.copy_(saved)
    np.testing.assert_allclose(x.numpy() @ weight.T + bias, out, rtol=1e-4, atol=1e-5)
    assert not np.array_equal(weight, layer.base_layer.weight.detach().numpy()[:ACTION_DIM])  # the adapter moved it


def test_lora_reply_passes_the_gate_with_a_score(lora_round):
    outcome = lora_round["gate"](lora_round["content"])
    assert outcome.status == VERIFIED, outcome.detail
    assert outcome.score is not None and outcome.loss_after < outcome.loss_before


def test_a_changed_action_out_proj_adapter_is_unbound(lora_round):
    """One quantization step in the B of ``action_out_proj``: the effective slice the aggregator commits differs
    from the proven one. Re-signed (the update hash matches), the binding catches it: UNBOUND."""
    from contracts import Contribution, sign_contribution

    content = lora_round["content"]
    sent = {k: np.array(v) for k, v in unpack(content["arrays"], content["layout"]).items()}
    name = f"{OUT_PROJ}.lora_B.default.weight"
    sent[name][0, 0] += 2.0 ** -8
    record = dict(content["contribution"])
    c = Contribution(record["run-id"], record["round"], record["global-hash"], params_hash(list(sent.values())),
                     record["proof-hash"], record["data-commitment"], record["loss-before"], record["loss-after"],
                     record["circuit-key"])
    node = lora_round["node"]
    signer = wallet_account(node.setup.wallet)
    record.update({"update-hash": c.update_hash,
                   "signature": bytes(sign_contribution(signer, c, CHAIN_ID, REGISTRY))})
    forged = RecordDict({**pack(sent), "metrics": content["metrics"], "contribution": ConfigRecord(record)})
    assert lora_round["gate"](forged).status == "UNBOUND"


def test_a_node_refuses_another_base_or_other_as(lora_round):
    """The round's hash of the fixed base and A's is not this node's: training would make another model."""
    from node.errors import UserError
    from node.lora import check_frozen

    check_frozen(lora_round["node"].bundle.policy, lora_round["config"])  # the aggregator's own: goes on
    with pytest.raises(UserError, match="another base model"):
        check_frozen(lora_round["node"].bundle.policy, {"lora-base-hash": "0x" + "00" * 32})


# ---------------------------------------------------------------------------------------------- the federation
@pytest.fixture(scope="module")
def lora_run(cache_dir, tmp_path_factory):
    """A verified LoRA federation: 2 honest nodes and a proof forger, 2 rounds, its chain started again to read (two
    honest nodes are enough for a mean of adapters; each node more costs a proof a round)."""
    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("lora") / "run"
    chains = []
    fed = FederationConfig(local_steps=5, batch_size=8, learning_rate=1e-2, eval_batches=2, fraction_evaluate=0.0,
                           slice_rows=16, krum_f=0, krum_m=2, lora_rank=RANK)
    demo = DemoConfig(nodes=3, rounds=2, out=str(out), cache_dir=str(cache_dir), episodes=1, frames=24,
                      data="synthetic", adversaries=("forge-proof",))
    summary = run_demo(demo, fed, on_chain=chains.append)
    chains[0].start()
    yield out, summary, chains[0]
    chains[0].stop()


def test_lora_federation_trains_proves_verifies_records_and_releases(lora_run, tmp_path, capsys, monkeypatch):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from safetensors.numpy import load_file

    from aggregator.cli import main
    from aggregator.ledger.provenance import load_policy, model_hash
    from aggregator.tools.release import build_release
    from node.lora import adapter_arrays

    out, summary, chain = lora_run
    assert summary["config"]["lora_rank"] == RANK
    for entry in summary["rounds"]:
        statuses = [n["status"] for n in entry["nodes"]]
        assert sorted(statuses).count("BAD_PROOF") == 1, statuses  # the forger, caught on its adapters' proof
        honest = [n for n in entry["nodes"] if n["status"] != "BAD_PROOF"]
        assert all(n["status"] in ("SELECTED", "NOT_SELECTED") and n["score"] is not None for n in honest)
        assert all(n["tx_hash"] for n in entry["nodes"]) and entry["close_tx_hash"]  # every outcome on chain
    moved = [e for e in summary["rounds"] if any(n["status"] == "SELECTED" for n in e["nodes"])]
    assert moved and all(e["new_global_hash"] != e["global_hash"] for e in moved)  # selected adapters averaged in

    # checkpoints in LeRobot's PEFT format: the adapter (A and B of every layer) and the base's reference
    last = summary["rounds"][-1]
    ckpt = out / "checkpoints" / f"round_{last['round']}"
    assert not (ckpt / "model.safetensors").exists()
    adapter = json.loads((ckpt / "adapter_config.json").read_text())
    assert adapter["r"] == RANK and adapter["base_model_name_or_path"] == str((out / "checkpoints" / "base").resolve())
    tensors = load_file(str(ckpt / "adapter_model.safetensors"))
    assert tensors and all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert model_hash(ckpt) == last["new_global_hash"]  # closeRound names the adapters' hash

    # the release: adapter + its base, signed, loadable with LeRobot; the merged model on request
    key = chain.private_keys[1]
    release = build_release(out, tmp_path / "release", aggregator_key=key, merged=True)
    folder = release.out
    assert (folder / "base" / "model.safetensors").is_file() and (folder / "merged" / "model.safetensors").is_file()
    code = main(["verify-model", str(folder), "--chain-rpc", chain.rpc_url, "--registry", summary["chain"]["registry"]])
    text = capsys.readouterr().out
    assert code == 0 and "closed with" in text, text

    peft_model = load_policy(folder)  # LeRobot's own loading of a PEFT policy: base, then PeftModel.from_pretrained
    config = PreTrainedConfig.from_pretrained(folder)
    assert config.use_peft
    assert params_hash(list(adapter_arrays(peft_model).values())) == last["new_global_hash"]
    merged = SmolVLAPolicy.from_pretrained(folder / "merged")
    base = peft_model.get_base_model()
    x = torch.randn(3, base.model.action_out_proj.in_features)
    with torch.no_grad():
        np.testing.assert_allclose(merged.model.action_out_proj(x).numpy(), base.model.action_out_proj(x).numpy(),
                                   rtol=1e-5, atol=1e-6)
        with peft_model.disable_adapter():  # the base alone differs: the adapter changed the model
            assert not torch.allclose(base.model.action_out_proj(x), merged.model.action_out_proj(x))
