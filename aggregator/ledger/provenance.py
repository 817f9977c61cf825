"""Where a model came from, checked against the chain: its hash, and the round whose ``closeRound`` names it.

The aggregator ends every round with ``closeRound(r, params_hash(θ_g'))``, θ_g' the trainable arrays in exchange
order (``node.params``). So anyone holding a zk0 model (a release folder or a checkpoint) can recompute that hash
from the weights LeRobot loads and look it up in the registry's ``RoundClosed`` events: the round, its records
(who contributed, with which proof and losses, selected or not) and the transactions. A model that no round
closed with is not a model this federation produced.

That hash covers the trainable arrays only (47 of SmolVLA's 124 tensors): not the frozen vision encoder, the
processors' normalisation statistics, config.json or the card (N7, issue 30). So ``zk0agg release`` adds a manifest
of every file's sha256, signed by the aggregator key that opened the run (``RunOpened``), and ``verify-model``
checks every byte against it, the signer against the chain, and the release's claims (round, transactions,
contributors) against the round's events.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("config.json", "model.safetensors")
ADAPTER_FILES = ("config.json", "adapter_config.json", "adapter_model.safetensors")  # LoRA mode's (node/lora.py)
VLM_FOLDER = "vlm"  # a release's own copy of a local VLM backbone (aggregator/tools/release.py)


def is_adapter_checkpoint(path: str | Path) -> bool:
    """Whether a checkpoint or release folder is LoRA mode's (PEFT's adapter files), not a whole SmolVLA."""
    return (Path(path) / ADAPTER_FILES[1]).is_file()


def checkpoint_dir(path: str | Path) -> Path:
    """A LeRobot ``save_pretrained`` folder (a release folder is one): config.json and model.safetensors."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"no folder at {path}: give a release folder or a checkpoint (checkpoints/round_<r>)")
    files = ADAPTER_FILES if is_adapter_checkpoint(path) else CHECKPOINT_FILES
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path} is not a LeRobot checkpoint: {', '.join(missing)} missing")
    return path


def load_policy(path: str | Path):
    """The policy exactly as a user of the model gets it: LeRobot's ``from_pretrained`` on the folder."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class

    path = checkpoint_dir(path)
    try:
        config = PreTrainedConfig.from_pretrained(path)
        config.device = "cpu"  # hashing needs no accelerator, and the bytes are the same
        if (path / VLM_FOLDER / "config.json").is_file():  # a release's own backbone, wherever the folder now is
            config.vlm_model_name = str(path.resolve() / VLM_FOLDER)
        with contextlib.redirect_stdout(io.StringIO()):  # LeRobot prints "Loading weights from local directory"
            if is_adapter_checkpoint(path):  # LoRA mode: the base, then the adapter (PEFT's format)
                from node.lora import load_adapter

                return load_adapter(path, config)
            return get_policy_class(config.type).from_pretrained(path, config=config)
    except Exception as err:  # LeRobot and the Hub client raise many types; the user needs the one line
        raise UserError(f"LeRobot cannot load the policy in {path}: {type(err).__name__}: {err}") from None


def model_hash(path: str | Path) -> str:
    """``params_hash`` of the policy's trainable arrays in exchange order (in LoRA mode its adapters' B's): the hash
    ``closeRound`` records."""
    from node.lora import adapter_arrays
    from node.params import get_trainable
    from prover.hashing import params_hash

    policy = load_policy(path)
    arrays = adapter_arrays(policy) if is_adapter_checkpoint(path) else get_trainable(policy)
    return params_hash(list(arrays.values()))


@dataclass
class Contributor:
    """One reply of the round, as the chain records it."""

    node: str
    status: str
    reason: str
    signed: bool
    proof_verified: bool
    update_hash: str
    proof_hash: str
    data_commitment: str
    loss_before: float
    loss_after: float
    tx_hash: str | None
    score: float | None = None  # the validation score the aggregator attested

    @classmethod
    def of_event(cls, registry, event: dict) -> Contributor:
        """A ``ContributionRecorded`` event (``registry.events``) as the reply it records."""
        r = registry.record_of_event(event)
        return cls(r.node, r.status.name, r.reason.name, r.signed, r.proof_verified, r.update_hash, r.proof_hash,
                   r.data_commitment, r.loss_before, r.loss_after, event["tx_hash"], r.score)


@dataclass
class Provenance:
    """The round that produced a model, from the registry's events and records."""

    model_hash: str
    chain_id: int
    registry: str
    run_id: str  # the run on the registry
    round: int
    global_hash: str  # the model the round started from
    circuit_id: str
    open_tx: str | None
    close_tx: str
    close_block: int
    records: list[Contributor] = field(default_factory=list)
    kept_by: list[int] = field(default_factory=list)  # later rounds that closed with the same model (no quorum)

    @property
    def selected(self) -> list[Contributor]:
        return [r for r in self.records if r.status == "SELECTED"]

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def find_provenance(registry, digest: str) -> Provenance | None:
    """The first round whose ``RoundClosed`` names ``digest``, with its records; None when no round did."""
    digest = digest.lower()
    closes = [e for e in registry.events("RoundClosed") if e["args"]["newGlobalHash"].lower() == digest]
    if not closes:
        return None
    first = closes[0]
    run_id, round_ = first["args"]["runId"], first["args"]["round"]
    info = registry.round_info(run_id, round_)
    opens = registry.events("RoundOpened", runId=bytes.fromhex(run_id[2:]), round=round_)
    events = registry.events("ContributionRecorded", runId=bytes.fromhex(run_id[2:]), round=round_)
    records = [Contributor.of_event(registry, e) for e in events]
    return Provenance(model_hash=digest, chain_id=registry.chain_id, registry=registry.address, run_id=run_id,
                      round=round_,
                      global_hash=info.global_hash, circuit_id=info.circuit_id,
                      open_tx=opens[0]["tx_hash"] if opens else None, close_tx=first["tx_hash"],
                      close_block=first["block"], records=records,
                      kept_by=[e["args"]["round"] for e in closes[1:] if e["args"]["runId"] == run_id])


def initial_model_round(registry, digest: str) -> int | None:
    """The round that *started* from ``digest`` when it is a model no round produced (e.g. the initial one)."""
    opened = [e["args"]["round"] for e in registry.events("RoundOpened")
              if e["args"]["globalHash"].lower() == digest.lower()]
    return opened[0] if opened else None


# ----------------------------------------------------------------------------------------------- the release manifest
#
# ``closeRound`` records only the trainable arrays' hash: the frozen vision encoder, the pre- and post-processors'
# normalisation statistics, config.json and the card are not on chain (N7, issue 30). So a release carries a manifest
# of every file's sha256 plus the trainables hash, signed (EIP-191 personal_sign) by the aggregator key that opened
# the run on chain: one changed byte anywhere, a missing or an added file, and the release is not the one signed.

MANIFEST_FILE = "zk0-manifest.json"
MANIFEST_FORMAT = "zk0-release-manifest/1"
RELOCATABLE = ("config.json", "policy_preprocessor.json")  # name the release's own vlm/ by absolute path
_VLM_PLACEHOLDER = json.dumps("<release>/" + VLM_FOLDER)


class Refused(Exception):
    """The model is not the one its release claims (one line: what differs)."""


def _canonical(name: str, data: bytes, vlm_paths: list[str]) -> bytes:
    """The bytes hashed for ``name``: as they are, but in the files that name the release's own backbone by absolute
    path, that path (the one the release was written with, or where the folder is now) as a placeholder. Moving a
    release, or pointing it at its own ``vlm/`` where it now is, changes no hash; pointing it elsewhere does."""
    if name not in RELOCATABLE:
        return data
    for path in vlm_paths:
        data = data.replace(json.dumps(path).encode(), _VLM_PLACEHOLDER.encode())
    return data


def release_files(folder: Path) -> list[str]:
    """Every file of the release, relative, '/'-separated, sorted; hidden ones (``.gitattributes`` and ``.cache/``
    that the Hub adds, ``.git/``) aside: neither LeRobot nor transformers read them."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.relative_to(folder).as_posix() != MANIFEST_FILE)


def file_hashes(folder: Path, vlm_path: str | None) -> dict[str, str]:
    """sha256 of every release file's canonical bytes."""
    folder = Path(folder)
    paths = [vlm_path, str(folder.resolve() / VLM_FOLDER)] if vlm_path else []
    return {name: hashlib.sha256(_canonical(name, (folder / name).read_bytes(), paths)).hexdigest()
            for name in release_files(folder)}


def _payload(manifest: dict) -> str:
    """What is signed: the manifest but its signature, as canonical JSON."""
    return json.dumps({k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True, separators=(",", ":"))


def make_manifest(folder: Path, model_hash_: str, vlm_path: str | None, key: str | None) -> dict:
    """The manifest of the release in ``folder``, signed with ``key`` (None: a run with no chain, unsigned)."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    manifest = {"format": MANIFEST_FORMAT, "model_hash": model_hash_, "vlm_path": vlm_path,
                "files": file_hashes(folder, vlm_path), "signer": Account.from_key(key).address if key else None}
    signed = Account.sign_message(encode_defunct(text=_payload(manifest)), private_key=key) if key else None
    return {**manifest, "signature": "0x" + bytes(signed.signature).hex() if signed else None}


def read_manifest(folder: Path) -> dict:
    """The release's manifest; refused when there is none (a checkpoint, or a release made before they were signed)
    or it is not one."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        if (folder / "zk0-provenance.json").is_file() or (folder / "README.md").is_file():
            raise Refused(f"{folder} has no {MANIFEST_FILE}: it was released before releases were signed, and only "
                          "its trainable weights could be checked; re-release it with zk0agg release")
        raise Refused(f"{folder} is a checkpoint, not a release: only a release carries the aggregator's signed "
                      f"manifest of every file; make one with zk0agg release --run <run> --round <r>")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Refused(f"cannot read {path}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(
            manifest.get("files"), dict):
        raise Refused(f"{path} is not a {MANIFEST_FORMAT} manifest: re-release the model with zk0agg release")
    return manifest


def check_files(folder: Path, manifest: dict) -> None:
    """Every file as the manifest lists it, none missing, none added; else refused naming the first that differs."""
    listed: dict = manifest["files"]
    found = file_hashes(folder, manifest.get("vlm_path"))
    for name in sorted(set(listed) | set(found)):
        if name not in found:
            raise Refused(f"{folder / name} is missing: the release was signed with it")
        if name not in listed:
            raise Refused(f"{folder / name} was added: the release was signed without it")
        if found[name] != listed[name]:
            raise Refused(f"{folder / name} differs from the release the aggregator signed (sha256 {found[name]}, "
                          f"signed {listed[name]})")


def manifest_signer(manifest: dict) -> str:
    """The address whose key signed the manifest; refused when unsigned or the signature is not its signer's."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    if not manifest.get("signature"):
        raise Refused(f"{MANIFEST_FILE} is not signed: the run recorded nothing on chain, so there is nothing to "
                      "check it against")
    try:
        signer = Account.recover_message(encode_defunct(text=_payload(manifest)), signature=manifest["signature"])
    except Exception as err:  # eth_account raises several types for a malformed signature
        raise Refused(f"{MANIFEST_FILE} has a malformed signature: {err}") from None
    if signer.lower() != str(manifest.get("signer")).lower():
        raise Refused(f"{MANIFEST_FILE} was changed after it was signed: its signature is {signer}'s, not its "
                      f"signer {manifest.get('signer')}'s")
    return signer


def run_aggregator(registry, run_id: str) -> str | None:
    """The address that opened ``run_id`` on the registry (``RunOpened``), None when no run has that id."""
    if not re.fullmatch(r"0x[0-9a-fA-F]{64}", str(run_id)):
        return None
    opened = registry.events("RunOpened", runId=bytes.fromhex(run_id[2:]))
    return opened[0]["args"]["aggregator"] if opened else None


# ----------------------------------------------------------------------------------------------- the card's claims


@dataclass
class RoundFacts:
    """What the chain holds of one round: the model it started from and closed with, its transactions, its
    verified records."""

    started_from: str | None
    circuit_id: str | None
    open_tx: str | None
    closed_with: str | None
    close_tx: str | None
    records: dict[str, Contributor]  # SELECTED and NOT_SELECTED records, by checksummed address


def round_facts(registry, run_id: str, round_: int) -> RoundFacts:
    """The chain's events of ``round_`` of ``run_id``."""
    rid = bytes.fromhex(run_id.removeprefix("0x"))
    opens = registry.events("RoundOpened", runId=rid, round=round_)
    closes = registry.events("RoundClosed", runId=rid, round=round_)
    replies = [Contributor.of_event(registry, e) for e in registry.events("ContributionRecorded", runId=rid,
                                                                          round=round_)]
    records = {c.node: c for c in replies if c.status in ("SELECTED", "NOT_SELECTED")}
    return RoundFacts(started_from=opens[0]["args"]["globalHash"] if opens else None,
                      circuit_id=opens[0]["args"]["circuitId"] if opens else None,
                      open_tx=opens[0]["tx_hash"] if opens else None,
                      closed_with=closes[0]["args"]["newGlobalHash"] if closes else None,
                      close_tx=closes[0]["tx_hash"] if closes else None, records=records)


def _same(claimed, chain) -> bool:
    """A claimed value equals the chain's: hex case aside, losses to the contract's fixed point (1e-9)."""
    if isinstance(chain, float):
        return isinstance(claimed, int | float) and math.isclose(claimed, chain, abs_tol=1e-9)
    return str(claimed).lower() == str(chain).lower()


def claim_mismatch(claimed: dict, digest: str, facts: RoundFacts) -> str | None:
    """The first claim of the release's provenance the chain contradicts, in words; None when the chain bears out
    every claim (absent values, e.g. a transaction not yet noted, claim nothing)."""
    where = f"round {claimed.get('round')} of run {claimed.get('chain_run_id')}"
    if facts.closed_with is None:
        return f"{where} never closed on chain"
    pairs = [("model_hash", digest, "the model's hash"), ("model_hash", facts.closed_with, "closeRound's new model"),
             ("close_round_tx", facts.close_tx, "its closeRound transaction"),
             ("open_round_tx", facts.open_tx, "its openRound transaction"),
             ("started_from", facts.started_from, "the model it started from"),
             ("circuit_id", facts.circuit_id, "its circuit")]
    for key, chain, what in pairs:
        if claimed.get(key) is not None and not _same(claimed[key], chain):
            return f"the release claims {key} {claimed[key]} for {where}; {what} on chain is {chain}"
    if bool(claimed.get("kept_global")) != (facts.started_from is not None
                                             and facts.started_from.lower() == facts.closed_with.lower()):
        return f"the release claims kept_global {claimed.get('kept_global')} for {where}; the chain says otherwise"
    contributors = {str(c.get("address")).lower(): c for c in claimed.get("contributors") or []}
    records = {node.lower(): r for node, r in facts.records.items()}
    for node in sorted(set(contributors) | set(records)):
        if node not in records:
            return f"the release names contributor {node} of {where}; the chain has no verified record of it"
        if node not in contributors:
            return f"the chain has a verified record of {records[node].node} in {where}; the release does not name it"
        c, r = contributors[node], records[node]
        for key, chain in (("status", r.status), ("update_hash", r.update_hash), ("loss_before", r.loss_before),
                           ("loss_after", r.loss_after), ("score", r.score), ("tx_hash", r.tx_hash)):
            if c.get(key) is not None and not _same(c[key], chain):
                return f"the release claims {key} {c[key]} for {r.node} in {where}; the chain says {chain}"
    return None


def card_omission(card: str, claimed: dict) -> str | None:
    """The first chain-checked value of the provenance the model card does not state (the card is rendered from it
    at release: one that does not is not this release's card)."""
    values = [claimed.get("model_hash"), claimed.get("registry"), claimed.get("close_round_tx")]
    values += [v for c in claimed.get("contributors") or [] for v in (c.get("address"), c.get("tx_hash"))]
    return next((v for v in values if v and v not in card), None)
