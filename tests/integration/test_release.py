"""The session's verified run (tests/integration/conftest.py: real anvil, EZKL, Flower, tiny SmolVLA; synthetic
data, nine nodes of which five attack, two rounds, W&B offline) and what operators do with it afterwards: read its
offline W&B run, release a round's model as a Hub-ready folder signed by the run's aggregator, and check a model's
provenance on chain (``zk0agg verify-model``), including a model with one weight changed, and (N7 of issue 30) a
release with one byte changed anywhere else: the frozen vision encoder, a normaliser statistic, config.json, the card.

The demo stops its anvil at the end and saves its state; the fixture started it again from that state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from node.errors import UserError

# The session's verified run is set up by whichever test needing it runs first: nine nodes with real proofs take
# 10-15 min on a loaded 2-core machine, beyond the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def demo(verified_run):
    """The session's verified run (tests/integration/conftest.py), logged to W&B offline."""
    out, summary, chain, _ = verified_run
    return out, summary, chain


def zk0agg(*args: str, timeout: float = 300, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250", **env_vars}
    return subprocess.run([sys.executable, "-m", "aggregator.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def verify_model(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``zk0agg verify-model`` in this process (LeRobot is imported already: seconds, not a minute)."""
    from aggregator.cli import main

    monkeypatch.setenv("COLUMNS", "250")  # rich's table width: whole hashes
    capsys.readouterr()
    code = main(["verify-model", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_wandb_offline_run_holds_every_round(demo):
    from aggregator.wandb_log import find_run_dir, read_offline_run

    out, summary, _ = demo
    run_dir = find_run_dir(out)
    assert run_dir is not None and run_dir.name.startswith("offline-run-"), list((out / "wandb").iterdir())
    run = read_offline_run(run_dir)
    assert run.config["chain"]["registry"] == summary["chain"]["registry"]
    assert run.config["rounds"] == 2 and run.config["verify"] is True and run.config["aggregator_key"] == "***"
    rounds = run.by_round()
    assert sorted(rounds) == [0, 1, 2]  # round 0: the initial model's held-out loss
    for entry in summary["rounds"]:
        row, nodes = rounds[entry["round"]], entry["nodes"]
        assert row["eval/server_loss"] == pytest.approx(entry["server_eval_loss"])
        assert row["nodes/replies"] == len(nodes)
        for status in ("SELECTED", "NOT_SELECTED", "BAD_PROOF"):
            assert row[f"nodes/status/{status}"] == sum(n["status"] == status for n in nodes)
        assert row["krum/selected"] == sum(n["status"] == "SELECTED" for n in nodes)
        assert row["krum/verified"] == sum(n["status"] in ("SELECTED", "NOT_SELECTED") for n in nodes)
        assert row["krum/kept_global"] == int(entry["kept_global"])
        for n in nodes:
            who = n["address"] or n["claimed_address"]
            assert row[f"node/{who}/selected"] == int(n["status"] == "SELECTED")
            if n["loss_after"] is not None:
                assert row[f"node/{who}/loss_after"] == pytest.approx(n["loss_after"])
        assert row["proof/prove_seconds_mean"] > 0 and row["proof/verify_seconds_mean"] > 0
        assert row["proof/bytes_min"] > 1000  # an EZKL proof artifact: kilobytes
        assert row["chain/gas_total"] > row["chain/gas_records"] > 0 and row["chain/transactions"] == 2 + len(nodes)
        assert row["time/round_seconds"] > 0
    assert run.summary["eval/final_eval_loss"] == pytest.approx(summary["final_eval_loss"])
    assert [r["eval/server_loss"] for r in run.history if r.get("round") == 0] == [
        pytest.approx(summary["initial_eval_loss"])]


def aggregator_key(chain) -> str:
    """The key that opened the demo's run on chain: anvil's second dev key (aggregator/tools/demo.py)."""
    return chain.private_keys[1]


@pytest.fixture(scope="module")
def release(demo, tmp_path_factory):
    out, _, chain = demo
    folder = tmp_path_factory.mktemp("hub") / "zk0-smolvla"
    result = zk0agg("release", "--run", str(out), "--out", str(folder), "--dataset", "lerobot/svla_so100_pickplace",
                    ZK0_AGGREGATOR_KEY=aggregator_key(chain))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result


def test_release_loads_with_lerobot_and_card_parses(demo, release):
    import torch
    from huggingface_hub import ModelCard
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.processor import PolicyProcessorPipeline

    out, summary, _ = demo
    folder, _ = release
    last = summary["rounds"][-1]
    policy = SmolVLAPolicy.from_pretrained(folder)
    saved = SmolVLAPolicy.from_pretrained(out / "checkpoints" / "round_2")
    for (name, a), (_, b) in zip(policy.state_dict().items(), saved.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    PolicyProcessorPipeline.from_pretrained(folder, config_filename="policy_preprocessor.json")
    PolicyProcessorPipeline.from_pretrained(folder, config_filename="policy_postprocessor.json")

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "lerobot" and card.data.license == "apache-2.0"
    assert {"lerobot", "robotics", "federated-learning"} <= set(card.data.tags)
    assert card.data.datasets == ["lerobot/svla_so100_pickplace"]  # only what the operator named
    assert last["close_tx_hash"] in card.text and summary["chain"]["registry"] in card.text
    assert last["new_global_hash"] in card.text
    verified = [n for n in last["nodes"] if n["status"] in ("SELECTED", "NOT_SELECTED")]
    assert verified and len(verified) < len(last["nodes"])  # the round had rejected replies too
    for node in last["nodes"]:  # the card lists the round's verified contributors, never a rejected reply
        listed = node["address"] in card.text and node["tx_hash"] in card.text
        assert listed == (node in verified), node
    provenance = json.loads((folder / "zk0-provenance.json").read_text())
    assert (provenance["round"], provenance["close_round_tx"]) == (2, last["close_tx_hash"])


def test_verify_model_names_the_round_and_its_transactions(demo, release, capsys, monkeypatch):
    out, summary, chain = demo
    folder, _ = release
    registry = summary["chain"]["registry"]
    entry = summary["rounds"][1]
    # a round without a Krum quorum keeps the global model: the round that first closed with it produced it
    producer = next(r for r in summary["rounds"] if r["new_global_hash"] == entry["new_global_hash"])
    code, text, err = verify_model(capsys, monkeypatch, str(folder), "--chain-rpc", chain.rpc_url,
                                   "--registry", registry)
    assert code == 0, err
    assert f"round {producer['round']} closed with" in text
    assert producer["close_tx_hash"] in text and producer["open_tx_hash"] in text
    assert entry["new_global_hash"] in text
    assert f"signed by  {Account.from_key(aggregator_key(chain)).address}" in text
    for node in producer["nodes"]:
        assert node["address"] in text and node["tx_hash"] in text and node["status"] in text

    # a bare checkpoint carries no signed manifest: only its trainable weights could be checked (N7)
    code, text, err = verify_model(capsys, monkeypatch, str(out / "checkpoints" / "round_1"), "--chain-rpc",
                                   chain.rpc_url, "--registry", registry)
    assert code == 1 and text == "" and len(err.strip().splitlines()) == 1, err
    assert "is a checkpoint, not a release" in err and "zk0agg release" in err, err


def test_verify_model_refuses_a_changed_weight(demo, release, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file, save_file

    out, summary, chain = demo
    folder, _ = release
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    weights = load_file(tampered / "model.safetensors")
    name = next(k for k in weights if "action_out_proj.weight" in k)
    weights[name][0, 0] += 1e-3
    save_file(weights, tampered / "model.safetensors")
    code, text, err = verify_model(capsys, monkeypatch, str(tampered), "--chain-rpc", chain.rpc_url, "--registry",
                                   summary["chain"]["registry"])
    assert code == 1, text
    assert "refused" in err and "model.safetensors differs from the release the aggregator signed" in err, err

    # nor does zk0agg release publish a checkpoint that is not the round's model
    run_copy = tmp_path / "run"
    shutil.copytree(out / "checkpoints" / "round_2", run_copy / "checkpoints" / "round_2")
    shutil.copy(out / "summary.json", run_copy / "summary.json")
    shutil.copy(tampered / "model.safetensors", run_copy / "checkpoints" / "round_2" / "model.safetensors")
    from aggregator.tools.release import build_release

    with pytest.raises(UserError, match="the checkpoint was changed"):
        build_release(run_copy, tmp_path / "never", aggregator_key=aggregator_key(chain))
    assert not (tmp_path / "never").exists()


def test_push_without_the_hub_is_a_clear_error(release, monkeypatch):
    from aggregator.tools.release import push_release

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, _ = release
    with pytest.raises(UserError, match="cannot push to the Hugging Face Hub"):
        push_release(folder, "zk0/test-model")


# ------------------------------------------------------------------------------------------ issue 33: operators

LOAD_AND_ACT = """
import sys

import torch
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

folder = sys.argv[1]
policy = SmolVLAPolicy.from_pretrained(folder)
preprocessor, postprocessor = make_pre_post_processors(policy.config, pretrained_path=folder)
observation = {key: torch.rand(*feature.shape) for key, feature in policy.config.input_features.items()}
observation["task"] = "pick up the cube"
with torch.inference_mode():
    action = postprocessor(policy.select_action(preprocessor(observation)))
print("action", tuple(action.shape))
"""


def _as_a_demo_in_the_checkout_wrote_it(demo, checkout: Path) -> Path:
    """The session run's last checkpoint and summary under ``checkout/outputs/run``, naming its VLM backbone
    relative to ``checkout`` (``.zk0/fixtures/<vlm>``), as ``zk0agg demo`` with its default cache writes them."""
    out, _, _ = demo
    run = checkout / "outputs" / "run"
    ckpt = run / "checkpoints" / "round_2"
    shutil.copytree(out / "checkpoints" / "round_2", ckpt)
    shutil.copy(out / "summary.json", run / "summary.json")
    config = json.loads((ckpt / "config.json").read_text())
    vlm = Path(config["vlm_model_name"])
    relative = f".zk0/fixtures/{vlm.name}"
    shutil.copytree(vlm, checkout / relative)
    config["vlm_model_name"] = relative
    (ckpt / "config.json").write_text(json.dumps(config, indent=4))
    pre = json.loads((ckpt / "policy_preprocessor.json").read_text())
    for step in pre["steps"]:
        if step["registry_name"] == "tokenizer_processor":
            assert step["config"]["tokenizer_name"] == str(vlm)
            step["config"]["tokenizer_name"] = relative
    (ckpt / "policy_preprocessor.json").write_text(json.dumps(pre, indent=2))
    return run


def test_a_release_loads_from_any_folder_and_when_moved(demo, tmp_path, capsys, monkeypatch):
    """Issue 33: a release named its VLM backbone as the run did, relative to the checkout
    (``.zk0/fixtures/learn-smolvlm-64``), so ``from_pretrained`` failed in any other folder ("Repo id must be in the
    form ..."). Now it carries the backbone and names it by absolute path: it loads and acts from an unrelated folder
    in a fresh process; moved away from the checkout and the path it was written to, the card's recipe loads it and
    ``verify-model`` still finds its round."""
    from aggregator.cli import main

    _, summary, chain = demo
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _as_a_demo_in_the_checkout_wrote_it(demo, checkout)
    monkeypatch.chdir(elsewhere)  # not where the run ran: its backbone is not found from here, said in one line
    capsys.readouterr()
    monkeypatch.delenv("ZK0_AGGREGATOR_KEY", raising=False)  # a run recorded on chain is released signed (N7)
    assert main(["release", "--run", str(run), "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no aggregator key" in err and "ZK0_AGGREGATOR_KEY" in err, err
    monkeypatch.setenv("ZK0_AGGREGATOR_KEY", aggregator_key(chain))
    assert main(["release", "--run", str(run), "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "run zk0agg release in the folder the run ran in" in err, err
    assert not (tmp_path / "never").exists()
    monkeypatch.chdir(checkout)
    assert main(["release", "--run", "outputs/run", "--out", "rel"]) == 0
    release = checkout / "rel"
    assert str(release) in capsys.readouterr().out
    config = json.loads((release / "config.json").read_text())
    assert Path(config["vlm_model_name"]) == release / "vlm" and (release / "vlm" / "tokenizer.json").is_file()

    loaded = subprocess.run([sys.executable, "-c", LOAD_AND_ACT, str(release)], cwd=elsewhere, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert loaded.returncode == 0 and "action (1, 6)" in loaded.stdout, loaded.stderr[-3000:]

    moved = tmp_path / "moved"  # another machine, or a Hub download: neither the checkout nor the old path exist
    release.rename(moved)
    shutil.rmtree(checkout)
    monkeypatch.chdir(elsewhere)
    card = (moved / "README.md").read_text()
    recipe = re.findall(r"```python\n(.*?)```", card, re.S)[-1]
    assert "snapshot_download" in recipe
    scope: dict = {}
    exec("from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy\n"
         + recipe.replace("<this folder>", str(moved)), scope)
    import torch

    policy = scope["policy"]
    observation = {key: torch.rand(*f.shape) for key, f in policy.config.input_features.items()}
    observation["task"] = "pick up the cube"
    with torch.inference_mode():
        action = scope["postprocessor"](policy.select_action(scope["preprocessor"](observation)))
    assert tuple(action.shape) == (1, 6)
    code, text, err = verify_model(capsys, monkeypatch, str(moved), "--chain-rpc", chain.rpc_url, "--registry",
                                   summary["chain"]["registry"], "--state-dir", str(tmp_path / "no-state"))
    assert code == 0 and "round 2 closed with" in text, err
    # pointed at its own backbone where it now is (no recipe needed), it is still the release the aggregator signed
    config = json.loads((moved / "config.json").read_text())
    config["vlm_model_name"] = str(moved.resolve() / "vlm")
    (moved / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    code, text, err = verify_model(capsys, monkeypatch, str(moved), "--chain-rpc", chain.rpc_url, "--registry",
                                   summary["chain"]["registry"], "--state-dir", str(tmp_path / "no-state"))
    assert code == 0 and "round 2 closed with" in text, err


def test_verify_model_reads_in_80_columns_with_every_hash_whole(demo, release, tmp_path, capsys, monkeypatch):
    """Issue 33: its table, eight columns of 42- and 66-character values, was unreadable at 80 columns (hashes cut
    to "…"). Now key-value lines: none wider than 80 but the folder's, every address and hash whole."""
    from aggregator.cli import main
    from aggregator.cli.common import open_registry
    from aggregator.ledger.provenance import find_provenance

    _, summary, chain = demo
    folder, _ = release
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    code = main(["verify-model", str(folder), "--chain-rpc", chain.rpc_url, "--registry", summary["chain"]["registry"],
                 "--state-dir", str(tmp_path / "no-state")])
    text, err = capsys.readouterr()
    assert code == 0, err
    lines = text.splitlines()
    assert [line for line in lines if len(line) > 80 and str(folder) not in line] == [], text
    words = {word for line in lines for word in line.split()}
    last = summary["rounds"][-1]
    assert {last["new_global_hash"], last["global_hash"], last["close_tx_hash"], last["open_tx_hash"]} <= words
    found = find_provenance(open_registry(chain.rpc_url, summary["chain"]["registry"]), last["new_global_hash"])
    assert len(found.records) == len(last["nodes"])
    for record in found.records:  # every record of the round, each value whole
        assert {record.node, record.status, record.update_hash, record.tx_hash} <= words, record
        assert record.proof_hash in words or not record.signed, record


def test_verify_model_says_which_registry_and_refuses_another_than_the_release_names(demo, release, tmp_path, capsys,
                                                                                      monkeypatch):
    """Issue 33: without --registry it read whatever federation.json the default state dir held (another run's, say)
    and said nothing of it. Now it says which registry it checks and where that came from, and refuses in one line a
    registry or chain other than the ones the release's own provenance names."""
    _, summary, chain = demo
    folder, _ = release
    registry = summary["chain"]["registry"]
    other = "0x" + "22" * 20

    def state(name: str, **facts) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "federation.json").write_text(json.dumps({"chain_rpc": chain.rpc_url, **facts}))
        return str(tmp_path / name)

    another_run = state("another-run", registry=other)
    code, text, err = verify_model(capsys, monkeypatch, str(folder), "--state-dir", another_run)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "error:" in err and registry in err and other in err and another_run in err, err
    code, _, err = verify_model(capsys, monkeypatch, str(folder), "--chain-rpc", chain.rpc_url, "--registry", other,
                                "--state-dir", another_run)
    assert code == 2 and "--registry" in err and other in err, err

    this_run = state("this-run", registry=registry)
    code, text, err = verify_model(capsys, monkeypatch, str(folder), "--state-dir", this_run)
    assert code == 0, err
    assert f"checking against registry {registry}" in err and f"from zk0agg start's state {this_run}" in err, err
    assert this_run in text and "round 2 closed with" in text

    code, text, err = verify_model(capsys, monkeypatch, str(folder), "--chain-rpc", chain.rpc_url, "--state-dir",
                                   str(tmp_path / "none"))
    assert code == 0 and "the release's own zk0-provenance.json" in err and "published registry" in err, err

    elsewhere = tmp_path / "from-another-chain"  # the same registry address on another chain is another registry
    shutil.copytree(folder, elsewhere)
    provenance = json.loads((elsewhere / "zk0-provenance.json").read_text())
    (elsewhere / "zk0-provenance.json").write_text(json.dumps({**provenance, "chain_id": 1}))
    resign(elsewhere, aggregator_key(chain))
    code, _, err = verify_model(capsys, monkeypatch, str(elsewhere), "--state-dir", this_run)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "released from chain 1" in err and f"is chain {provenance['chain_id']}" in err, err


# ------------------------------------------------------------------------------------------ N7 of issue 30


def resign(folder: Path, key: str) -> None:
    """Sign ``folder``'s files anew with ``key``, as its manifest's signer would."""
    from aggregator.ledger.provenance import MANIFEST_FILE, make_manifest

    old = json.loads((folder / MANIFEST_FILE).read_text())
    (folder / MANIFEST_FILE).write_text(json.dumps(make_manifest(folder, old["model_hash"], old["vlm_path"], key)))


def _zero_a_vision_encoder_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = next(k for k in weights if "vision_model.encoder" in k and k.endswith(".weight"))
    weights[name].zero_()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _change_the_action_unnormaliser(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
    stats = load_file(path)
    stats["action.std"][5] *= 3  # the gripper's actions come out three times as wide
    save_file(stats, path)


def _change_the_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["n_action_steps"] = config["n_action_steps"] + 1
    (folder / "config.json").write_text(json.dumps(config, indent=4) + "\n")


def _edit_the_card(folder: Path) -> None:
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text(card.replace("Held-out loss before training", "Held-out loss (halved) before "
                                                                                    "training"))


@pytest.mark.parametrize("tamper, name", [
    (_zero_a_vision_encoder_tensor, "model.safetensors"),
    (_change_the_action_unnormaliser, "policy_postprocessor_step_0_unnormalizer_processor.safetensors"),
    (_change_the_config, "config.json"),
    (_edit_the_card, "README.md"),
])
def test_verify_model_refuses_a_release_changed_beyond_its_trainable_weights(demo, release, tmp_path, capsys,
                                                                            monkeypatch, tamper, name):
    """N7: the chain records only the trainable weights' hash (47 of 124 tensors), so a zeroed vision encoder, a
    changed action un-normaliser, config or card all passed as verified. Now the release's manifest, signed by the
    run's aggregator, holds every byte: each is refused in one line naming the file."""
    _, summary, chain = demo
    folder, _ = release
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    tamper(tampered)
    if name == "model.safetensors":  # what made it pass before: the hash the chain records is unchanged
        from aggregator.ledger.provenance import model_hash

        assert model_hash(tampered) == summary["rounds"][-1]["new_global_hash"]
    code, text, err = verify_model(capsys, monkeypatch, str(tampered), "--chain-rpc", chain.rpc_url, "--registry",
                                   summary["chain"]["registry"], "--state-dir", str(tmp_path / "no-state"))
    assert code == 1 and text == "" and len(err.strip().splitlines()) == 1, err
    assert f"refused: {tampered / name} differs from the release the aggregator signed" in err, err


def test_verify_model_refuses_a_release_not_signed_by_the_runs_aggregator_or_claiming_what_the_chain_denies(
        demo, release, tmp_path, capsys, monkeypatch):
    """Re-signed by another key (anyone can sign), a release is refused: only the key that opened the run on chain
    (RunOpened) vouches for it. Signed by the aggregator but claiming a loss the chain does not record, it is refused
    too: the card's claims are checked against the round's records. A release of the old format is refused, saying
    to re-release it."""
    from aggregator.ledger.provenance import MANIFEST_FILE

    _, summary, chain = demo
    folder, _ = release
    flags = ("--chain-rpc", chain.rpc_url, "--registry", summary["chain"]["registry"], "--state-dir",
             str(tmp_path / "no-state"))
    other = tmp_path / "other-signer"
    shutil.copytree(folder, other)
    resign(other, chain.private_keys[0])  # the registry's owner, not the run's aggregator
    code, _, err = verify_model(capsys, monkeypatch, str(other), *flags)
    assert code == 1 and len(err.strip().splitlines()) == 2, err  # "checking against registry ...", then refused
    assert (f"signed by {Account.from_key(chain.private_keys[0]).address}, not by "
            f"{Account.from_key(aggregator_key(chain)).address}, the aggregator that opened run") in err, err

    claims = tmp_path / "claims"
    shutil.copytree(folder, claims)
    provenance = json.loads((claims / "zk0-provenance.json").read_text())
    provenance["contributors"][0]["loss_after"] = provenance["contributors"][0]["loss_after"] / 2
    (claims / "zk0-provenance.json").write_text(json.dumps(provenance, indent=2))
    resign(claims, aggregator_key(chain))
    code, _, err = verify_model(capsys, monkeypatch, str(claims), *flags)
    assert code == 1 and "refused" in err and "claims loss_after" in err and "the chain says" in err, err

    old = tmp_path / "old-format"
    shutil.copytree(folder, old)
    (old / MANIFEST_FILE).unlink()
    code, text, err = verify_model(capsys, monkeypatch, str(old), *flags)
    assert code == 1 and text == "" and len(err.strip().splitlines()) == 1, err
    assert "released before releases were signed" in err and "re-release it with zk0agg release" in err, err
