"""``zk0agg release``: one round's global model as a Hugging Face Hub-ready folder, with its provenance.

The folder is the round's LeRobot checkpoint (policy config and weights, pre- and post-processors: what
``SmolVLAPolicy.from_pretrained`` loads) plus a model card (``README.md`` with the Hub's YAML metadata) and
``zk0-provenance.json``. The card says how the model was made (rounds, held-out loss, closed-loop success) and
where to check it: the chain, the registry, the round and the ``closeRound`` transaction that names this model's
hash, and the wallets whose updates were averaged into it. ``zk0agg verify-model`` checks all of it on chain.

The chain records only the trainable arrays' hash, so the release also carries ``zk0-manifest.json``: every file's
sha256 (weights, processors and their statistics, config, card, backbone) and that hash, signed by the aggregator
key that opened the run (``aggregator.ledger.provenance``). One changed byte anywhere and ``verify-model`` refuses it.

The VLM backbone: a model built offline (``tiny``, ``learn``, ``full-random``: ``node/model.py``) names a local
folder (config, image processor, tokenizer), often relative to the folder the run ran in. LeRobot reads that name
(``vlm_model_name``; the preprocessor's ``tokenizer_name``) as a Hub repo id or a path against the *caller's* working
folder, never against the checkpoint's own folder. So the release carries the backbone (kilobytes) in ``vlm/`` and
names it by absolute path: it loads from any working folder. A copy moved elsewhere (another machine, a Hub
download) points ``vlm_model_name`` at its own ``vlm/`` (the card shows how; ``verify-model`` does it itself). A
backbone that is a Hub repo (``hf:`` specs) stays named as it is: it loads wherever the Hub does.

Datasets: nodes' data is private, so the card names no contributor's dataset unless the aggregator operator
passes it (``--dataset ORG/NAME``) for a contributor who agreed to be named. Nothing is inferred.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from aggregator.ledger.provenance import (
    MANIFEST_FILE,
    VLM_FOLDER,
    checkpoint_dir,
    is_adapter_checkpoint,
    make_manifest,
    model_hash,
)
from node.errors import UserError

log = logging.getLogger(__name__)

PROVENANCE_FILE = "zk0-provenance.json"
TOKENIZER_STEP = "tokenizer_processor"  # the preprocessor step that loads the VLM's tokenizer by name
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # a Hub model id: name or owner/name
TAGS = ["lerobot", "robotics", "smolvla", "so100", "federated-learning", "zero-knowledge", "zk0"]


@dataclass
class Release:
    out: Path
    round: int
    model_hash: str
    provenance: dict
    datasets: list[str] = field(default_factory=list)
    signer: str | None = None  # the aggregator address that signed the manifest (None: a run with no chain)


def _read_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no summary.json in {run_dir}: give the output folder of a zk0 run (outputs/<run>)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if not summary.get("rounds"):
        raise UserError(f"{path} records no finished round: nothing to release")
    return summary


def _round_entry(summary: dict, round_: int | None) -> dict:
    rounds = {r["round"]: r for r in summary["rounds"]}
    if round_ is None:
        return summary["rounds"][-1]
    if round_ not in rounds:
        raise UserError(f"round {round_} is not in this run (rounds {', '.join(map(str, rounds))})")
    return rounds[round_]


def provenance_of(summary: dict, entry: dict, digest: str) -> dict:
    """What the run's own records say about this model (``verify-model`` checks it against the chain)."""
    chain = summary.get("chain") or {}
    contributors = [{"address": n["address"], "status": n["status"], "loss_before": n.get("loss_before"),
                     "loss_after": n.get("loss_after"), "score": n.get("score"), "update_hash": n.get("update_hash"),
                     "tx_hash": n.get("tx_hash")}
                    for n in entry["nodes"] if n["status"] in ("SELECTED", "NOT_SELECTED")]
    return {"model_hash": digest, "run_id": summary.get("run_id"), "round": entry["round"],
            "chain_id": chain.get("chain_id"), "registry": chain.get("registry"), "chain_run_id": chain.get("run_id"),
            "close_round_tx": entry.get("close_tx_hash"), "open_round_tx": entry.get("open_tx_hash"),
            "started_from": entry.get("global_hash"), "kept_global": entry.get("kept_global", False),
            "circuit_id": chain.get("circuit_id"), "srs": chain.get("srs"), "contributors": contributors}


def build_release(run_dir: str | Path, out: str | Path, round_: int | None = None,
                  datasets: list[str] | None = None, license_: str = "apache-2.0",
                  aggregator_key: str | None = None, merged: bool = False) -> Release:
    """Write the release folder of ``round_`` (default: the run's last round) of the run in ``run_dir``, its manifest
    signed with ``aggregator_key`` (needed for a run recorded on chain: the key that opened it)."""
    run_dir, out = Path(run_dir).expanduser(), Path(out).expanduser().resolve()
    summary = _read_summary(run_dir)
    entry = _round_entry(summary, round_)
    if summary.get("chain") and not aggregator_key:
        raise UserError("no aggregator key: a release of a run recorded on chain is signed by the aggregator key that "
                        "opened it; give --aggregator-key-file FILE or set ZK0_AGGREGATOR_KEY")
    ckpt = checkpoint_dir(run_dir / "checkpoints" / f"round_{entry['round']}")
    vlm = local_vlm(ckpt)
    digest = model_hash(ckpt)
    if digest != entry["new_global_hash"]:
        raise UserError(f"{ckpt} hashes to {digest}, but round {entry['round']} ended with "
                        f"{entry['new_global_hash']}: the checkpoint was changed, refusing to release it")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty: give a new folder for the release")
    out.mkdir(parents=True, exist_ok=True)
    for item in ckpt.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    lora = is_adapter_checkpoint(out)
    if lora:  # LoRA mode: the adapter, and its base when that is a local folder
        from node.lora import carry_base

        carry_base(out)
    if vlm is not None:
        _carry_vlm(vlm, out)
        if model_hash(out) != digest:  # the release as a user loads it: the same model, from its own backbone
            raise UserError(f"the release in {out} does not load as the round's model; it is left incomplete")
    if merged and lora:
        _merged(out)
    provenance = provenance_of(summary, entry, digest)
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    hub_vlm = None if vlm is not None else json.loads((out / "config.json").read_text()).get("vlm_model_name")
    card = model_card(summary, entry, provenance, list(datasets or []), license_, hub_vlm)
    card.save(out / "README.md")
    key = aggregator_key if summary.get("chain") else None
    manifest = make_manifest(out, digest, str(out / VLM_FOLDER) if vlm is not None else None, key)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("release of round %d written to %s, signed by %s", entry["round"], out, manifest["signer"])
    return Release(out, entry["round"], digest, provenance, list(datasets or []), manifest["signer"])


def _merged(out: Path) -> None:
    """``out/merged``: the adapter merged into its base, a plain SmolVLA folder with the release's processors
    (LoRA mode, on request: ``SmolVLAPolicy.from_pretrained(out / "merged")`` loads it without PEFT)."""
    from aggregator.ledger.provenance import load_policy
    from node.lora import save_plain

    save_plain(load_policy(out).get_base_model(), out / "merged", merged=True)
    for item in out.glob("policy_*processor*"):
        shutil.copy2(item, out / "merged" / item.name)


def local_vlm(ckpt: Path) -> Path | None:
    """The local VLM backbone folder the checkpoint's ``config.json`` names, resolved as LeRobot resolves it
    (against this working folder); None for a Hub repo id, which loads wherever the Hub does."""
    try:
        name = json.loads((ckpt / "config.json").read_text()).get("vlm_model_name")
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {ckpt / 'config.json'}: {err}") from None
    if not name:
        return None
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    if path.is_absolute() or not _REPO_ID.match(name):
        raise UserError(f"{ckpt / 'config.json'} names the VLM backbone folder {name}, which is not found from "
                        f"{Path.cwd()}: run zk0agg release in the folder the run ran in")
    return None


def _carry_vlm(vlm: Path, out: Path) -> None:
    """Copy the VLM backbone into ``out/vlm`` and name it there, by absolute path, in the policy's config and its
    preprocessor's tokenizer step (LeRobot resolves neither against the checkpoint's folder)."""
    shutil.copytree(vlm, out / VLM_FOLDER)
    target = str(out / VLM_FOLDER)
    config = json.loads((out / "config.json").read_text())
    config["vlm_model_name"] = target
    (out / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    pre = out / "policy_preprocessor.json"
    if pre.is_file():
        pipeline = json.loads(pre.read_text())
        for step in pipeline.get("steps", []):
            if step.get("registry_name") == TOKENIZER_STEP and "tokenizer_name" in step.get("config", {}):
                step["config"]["tokenizer_name"] = target
        pre.write_text(json.dumps(pipeline, indent=2) + "\n")


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def model_card(summary: dict, entry: dict, provenance: dict, datasets: list[str], license_: str,
               hub_vlm: str | None = None):
    """The Hub model card: YAML metadata, how it was trained, and its on-chain provenance. ``hub_vlm``: the Hub
    model the policy's VLM backbone is (None: the release carries it in ``vlm/``)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="lerobot", license=license_, tags=TAGS, pipeline_tag="robotics",
                         datasets=datasets or None)
    config = summary.get("config", {})
    upto = [r for r in summary["rounds"] if r["round"] <= entry["round"]]
    rounds = "\n".join(
        f"| {r['round']} | {_fmt(r['server_eval_loss'])} | {_fmt(r.get('success_rate'), '.0%')} | "
        f"{sum(n['status'] == 'SELECTED' for n in r['nodes'])} / {len(r['nodes'])} |" for r in upto)
    chain_id, registry = provenance["chain_id"], provenance["registry"]
    has_score = any(c.get("score") is not None for c in provenance["contributors"])
    contributors = "\n".join(
        f"| `{c['address']}` | {c['status']} | {_fmt(c['loss_before'])} → {_fmt(c['loss_after'])} |"
        + (f" {_fmt(c.get('score'))} |" if has_score else "") + f" `{c['tx_hash'] or '-'}` |"
        for c in provenance["contributors"])
    score_head, score_rule = (" score |", "---|") if has_score else ("", "")
    named = ("\n".join(f"- [{d}](https://huggingface.co/datasets/{d})" for d in datasets) if datasets else
             "None: each contributor's data stayed on its own machine, and no contributor asked to be named.")
    dev_srs = ("\n> **Development SRS.** The proofs of this run were made with a development SRS, which its maker "
               "could forge: the records below say what the nodes claimed and the aggregator checked, not more. "
               "A production federation uses the public ceremony SRS.\n" if provenance.get("srs") == "dev" else "")
    verified = registry is not None
    backbone = (f"""
Its vision-language backbone (config, image processor, tokenizer) is in `{VLM_FOLDER}/`, and `config.json` names it
(`vlm_model_name`, and the preprocessor's `tokenizer_name`) by the absolute path where this folder was written:
LeRobot resolves that name as a Hub repo id or a path, never against the model's own folder. So it loads from any
working folder on this machine; a copy elsewhere (another machine, a Hub download) names its own `{VLM_FOLDER}/`:

```python
from pathlib import Path

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import make_pre_post_processors

folder = Path("<this folder>")  # from the Hub: Path(huggingface_hub.snapshot_download("<repo>"))
config = PreTrainedConfig.from_pretrained(folder)
config.vlm_model_name = str(folder.resolve() / "{VLM_FOLDER}")
policy = SmolVLAPolicy.from_pretrained(folder, config=config)
preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=str(folder),
    preprocessor_overrides={{"{TOKENIZER_STEP}": {{"tokenizer_name": config.vlm_model_name}}}})
```
""" if hub_vlm is None else f"Its vision-language backbone is the Hub model `{hub_vlm}` (`vlm_model_name` in "
                "`config.json`).\n")
    kept = (f"\n> Round {entry['round']} kept the global model it started from (too few verified replies for "
            "Krum): this model was produced by an earlier round, which `zk0agg verify-model` names.\n"
            if entry.get("kept_global") else "")
    body = f"""
# zk0 SmolVLA policy: federation run `{summary.get('run_id')}`, round {entry['round']}

A [LeRobot](https://github.com/huggingface/lerobot) SmolVLA policy for the SO-100 arm, trained with federated
learning by zk0 nodes that never shared their data. Each node proved (EZKL) and signed what
its update does on its own data; the aggregator checked every reply before robust (Multi-)Krum aggregation and
recorded every decision on chain.

```python
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

policy = SmolVLAPolicy.from_pretrained("<this folder or repo>")
```

The policy's pre- and post-processors (`policy_preprocessor.json`, `policy_postprocessor.json`) are in this folder
too (`lerobot.processor.PolicyProcessorPipeline.from_pretrained`). The model is `{config.get('model', '?')}`.
{backbone}
## Training

{len(upto)} federated round(s), {config.get('local_steps', '?')} local steps per node per round (FedProx
μ = {config.get('proximal_mu', '?')}), Multi-Krum f = {config.get('krum_f', '?')}, m = {config.get('krum_m', '?')}.
Held-out loss before training: {_fmt(summary.get('initial_eval_loss'))}.

| round | held-out loss | closed-loop success | selected / replies |
|---|---|---|---|
{rounds}

## Datasets

{named}

## Provenance

{'Recorded on chain ' + str(chain_id) + ', registry `' + str(registry) + '`.' if verified else
 'This run was not verified: no proofs, signatures or chain records.'}

- model hash (`params_hash` of the trainable parameters, exchange order): `{provenance['model_hash']}`
- round: {entry['round']}, started from `{provenance['started_from']}`
- `closeRound` transaction naming this hash: `{provenance['close_round_tx'] or '-'}`
- circuit id: `{provenance.get('circuit_id') or '-'}`
{kept}{dev_srs}
Contributing wallets (verified replies; SELECTED ones were averaged into this model):

| wallet | status | proven loss before → after |{score_head} record tx |
|---|---|---|{score_rule}---|
{contributors}

Check it yourself: `zk0agg verify-model <this folder> --chain-rpc <RPC of chain {chain_id}> --registry {registry}`
checks every file of this folder against `{MANIFEST_FILE}` (each file's sha256, signed by the aggregator that opened
the run on chain), recomputes the hash from the weights, finds the round that closed with it on chain and checks
this card's claims against that round's records; it refuses a model that no round produced, or one changed byte.
Machine-readable: `{PROVENANCE_FILE}`.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def push_release(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload the release folder to the Hub as model repo ``repo_id``; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = checkpoint_dir(folder)
    if not (folder / "README.md").is_file() or not (folder / MANIFEST_FILE).is_file():
        raise UserError(f"{folder} has no model card or no {MANIFEST_FILE}: make it with zk0agg release first")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message="zk0 release")
    except Exception as err:  # the Hub client raises many types: offline, auth, network
        raise UserError(f"cannot push to the Hugging Face Hub ({repo_id}): {type(err).__name__}: {err}. The folder "
                        f"{folder} is complete: push it later, or upload it with huggingface-cli") from None
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)
