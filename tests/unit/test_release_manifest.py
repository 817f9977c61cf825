"""N7 (issue 30): a release's signed manifest holds every byte of it, not only the trainable weights the chain
records; moving the folder changes nothing, and the release's claims are checked against the round's chain facts
(aggregator.ledger.provenance)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eth_account import Account

from aggregator.ledger.provenance import (
    MANIFEST_FILE,
    Contributor,
    Refused,
    RoundFacts,
    card_omission,
    check_files,
    claim_mismatch,
    make_manifest,
    manifest_signer,
    read_manifest,
)

AGGREGATOR_KEY, OTHER_KEY = "0x" + "11" * 32, "0x" + "22" * 32
MODEL_HASH = "0x" + "ab" * 32
NODE_A, NODE_B = "0x" + "a1" * 20, "0x" + "b2" * 20


def _release(folder: Path) -> Path:
    """A release folder as zk0agg release writes one: config and preprocessor name its own vlm/ by absolute path."""
    vlm = str(folder.resolve() / "vlm")
    (folder / "vlm").mkdir(parents=True)
    (folder / "vlm" / "tokenizer.json").write_text('{"vocab": 8}')
    (folder / "config.json").write_text(json.dumps({"type": "smolvla", "vlm_model_name": vlm}, indent=4))
    (folder / "policy_preprocessor.json").write_text(json.dumps(
        {"steps": [{"registry_name": "tokenizer_processor", "config": {"tokenizer_name": vlm}}]}, indent=2))
    (folder / "model.safetensors").write_bytes(bytes(range(256)))
    (folder / "policy_postprocessor_step_0_unnormalizer_processor.safetensors").write_bytes(b"\x00" * 64)
    (folder / "README.md").write_text("# card\n")
    (folder / "zk0-provenance.json").write_text("{}")
    _sign(folder, vlm)
    return folder


def _sign(folder: Path, vlm: str | None, key: str | None = AGGREGATOR_KEY) -> dict:
    manifest = make_manifest(folder, MODEL_HASH, vlm, key)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return manifest


def test_an_untouched_release_passes_and_its_signer_is_the_aggregator(tmp_path):
    folder = _release(tmp_path / "rel")
    manifest = read_manifest(folder)
    check_files(folder, manifest)
    assert manifest_signer(manifest) == Account.from_key(AGGREGATOR_KEY).address
    assert sorted(manifest["files"]) == ["README.md", "config.json", "model.safetensors",
                                         "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
                                         "policy_preprocessor.json", "vlm/tokenizer.json", "zk0-provenance.json"]


@pytest.mark.parametrize("name", ["model.safetensors", "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
                                  "config.json", "README.md", "vlm/tokenizer.json", "zk0-provenance.json"])
def test_one_changed_byte_in_any_file_is_refused_naming_it(tmp_path, name):
    folder = _release(tmp_path / "rel")
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 1
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(Refused, match=f"{folder / name} differs from the release the aggregator signed"):
        check_files(folder, read_manifest(folder))


def test_a_missing_or_added_file_is_refused_hidden_ones_aside(tmp_path):
    folder = _release(tmp_path / "rel")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # what the Hub adds
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "x.metadata").write_text("x")
    check_files(folder, read_manifest(folder))
    (folder / "vlm" / "tokenizer_config.json").write_text("{}")  # would change how the tokenizer loads
    with pytest.raises(Refused, match="tokenizer_config.json was added"):
        check_files(folder, read_manifest(folder))
    (folder / "vlm" / "tokenizer_config.json").unlink()
    (folder / "README.md").unlink()
    with pytest.raises(Refused, match="README.md is missing"):
        check_files(folder, read_manifest(folder))


def test_a_moved_release_passes_and_may_name_its_own_backbone_but_no_other(tmp_path):
    moved = tmp_path / "moved"
    _release(tmp_path / "rel").rename(moved)
    check_files(moved, read_manifest(moved))  # the config still names the path it was written to
    config = json.loads((moved / "config.json").read_text())
    config["vlm_model_name"] = str(moved.resolve() / "vlm")  # pointed at its own copy, where it now is
    (moved / "config.json").write_text(json.dumps(config, indent=4))
    check_files(moved, read_manifest(moved))
    config["vlm_model_name"] = str(tmp_path / "evil" / "vlm")
    (moved / "config.json").write_text(json.dumps(config, indent=4))
    with pytest.raises(Refused, match="config.json differs"):
        check_files(moved, read_manifest(moved))


def test_a_changed_manifest_or_no_signature_is_refused_another_key_is_named(tmp_path):
    folder = _release(tmp_path / "rel")
    manifest = read_manifest(folder)
    forged = {**manifest, "files": {**manifest["files"], "model.safetensors": "00" * 32}}
    with pytest.raises(Refused, match="was changed after it was signed"):
        manifest_signer(forged)
    with pytest.raises(Refused, match="malformed signature"):
        manifest_signer({**manifest, "signature": "0x1234"})
    with pytest.raises(Refused, match="is not signed"):
        manifest_signer(_sign(folder, None, key=None))
    # anyone can sign a manifest of their own: verify-model compares the signer with the run's aggregator on chain
    assert manifest_signer(_sign(folder, None, key=OTHER_KEY)) == Account.from_key(OTHER_KEY).address


def test_no_manifest_is_refused_saying_what_to_do(tmp_path):
    folder = _release(tmp_path / "rel")
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(Refused, match="released before releases were signed.*re-release it with zk0agg release"):
        read_manifest(folder)
    for name in ("README.md", "zk0-provenance.json"):
        (folder / name).unlink()
    with pytest.raises(Refused, match="is a checkpoint, not a release.*zk0agg release"):
        read_manifest(folder)
    (folder / MANIFEST_FILE).write_text('{"files": {}}')
    with pytest.raises(Refused, match="is not a zk0-release-manifest/1 manifest"):
        read_manifest(folder)


# ------------------------------------------------------------------------------------------ claims against the chain


def _record(node: str, status: str, loss_before: float = 1.5, tx: str = "0x" + "c1" * 32) -> Contributor:
    return Contributor(node, status, "NONE", True, False, "0x" + "d1" * 32, "0x" + "e1" * 32, "0x" + "f1" * 32,
                       loss_before, 1.25, tx, 0.5)


def _facts(**changes) -> RoundFacts:
    facts = {"started_from": "0x" + "01" * 32, "circuit_id": "0x" + "02" * 32, "open_tx": "0x" + "03" * 32,
             "closed_with": MODEL_HASH, "close_tx": "0x" + "04" * 32,
             "records": {NODE_A: _record(NODE_A, "SELECTED"), NODE_B: _record(NODE_B, "NOT_SELECTED")}}
    return RoundFacts(**{**facts, **changes})


def _claims(**changes) -> dict:
    contributors = [{"address": NODE_A.upper().replace("0X", "0x"), "status": "SELECTED", "loss_before": 1.5,
                     "loss_after": 1.25, "score": 0.5, "update_hash": "0x" + "d1" * 32, "tx_hash": "0x" + "c1" * 32},
                    {"address": NODE_B, "status": "NOT_SELECTED", "loss_before": 1.5, "loss_after": 1.25,
                     "score": None, "update_hash": "0x" + "d1" * 32, "tx_hash": None}]  # None: claims nothing
    claims = {"model_hash": MODEL_HASH, "chain_run_id": "0x" + "09" * 32, "round": 2,
              "close_round_tx": "0x" + "04" * 32, "open_round_tx": "0x" + "03" * 32, "started_from": "0x" + "01" * 32,
              "kept_global": False, "circuit_id": "0x" + "02" * 32, "contributors": contributors}
    return {**claims, **changes}


def test_claims_the_chain_bears_out_pass():
    assert claim_mismatch(_claims(), MODEL_HASH, _facts()) is None
    kept = _facts(started_from=MODEL_HASH)
    assert claim_mismatch(_claims(kept_global=True, started_from=MODEL_HASH), MODEL_HASH, kept) is None


@pytest.mark.parametrize("claims, facts, words", [
    (_claims(close_round_tx="0x" + "05" * 32), _facts(), "claims close_round_tx"),
    (_claims(round=3), _facts(closed_with=None), "round 3 of run .* never closed on chain"),
    (_claims(), _facts(closed_with="0x" + "06" * 32), "closeRound's new model on chain is"),
    (_claims(started_from="0x" + "07" * 32), _facts(), "claims started_from"),
    (_claims(kept_global=True), _facts(), "claims kept_global True"),
    (_claims(), _facts(records={NODE_A: _record(NODE_A, "SELECTED")}), f"names contributor {NODE_B}.*no verified"),
    (_claims(contributors=[]), _facts(), "the chain has a verified record of .* the release does not name it"),
    (_claims(), _facts(records={NODE_A: _record(NODE_A, "NOT_SELECTED"), NODE_B: _record(NODE_B, "NOT_SELECTED")}),
     "claims status SELECTED"),
    (_claims(), _facts(records={NODE_A: _record(NODE_A, "SELECTED", loss_before=6.0),
                                NODE_B: _record(NODE_B, "NOT_SELECTED")}), "claims loss_before 1.5"),
    (_claims(), _facts(records={NODE_A: _record(NODE_A, "SELECTED", tx="0x" + "08" * 32),
                                NODE_B: _record(NODE_B, "NOT_SELECTED")}), "claims tx_hash"),
])
def test_a_claim_the_chain_contradicts_is_named(claims, facts, words):
    assert re.search(words, claim_mismatch(claims, MODEL_HASH, facts))


def test_the_card_must_state_what_the_provenance_claims():
    claims = _claims(registry="0x" + "aa" * 20)
    card = " ".join([MODEL_HASH, claims["registry"], claims["close_round_tx"], NODE_A.upper().replace("0X", "0x"),
                     "0x" + "c1" * 32, NODE_B])
    assert card_omission(card, claims) is None
    assert card_omission(card.replace(NODE_B, "0x" + "99" * 20), claims) == NODE_B
