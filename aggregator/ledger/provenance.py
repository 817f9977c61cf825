"""Where a model came from, checked against the chain: its hash, and the round whose ``closeRound`` names it.

The aggregator ends every round with ``closeRound(r, params_hash(θ_g'))``, θ_g' the trainable arrays in exchange
order (``node.params``). So anyone holding a zk0 model (a release folder or a checkpoint) can recompute that hash
from the weights LeRobot loads and look it up in the registry's ``RoundClosed`` events: the round, its records
(who contributed, with which proof and losses, selected or not) and the transactions. A model that no round
closed with is not a model this federation produced.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("config.json", "model.safetensors")
VLM_FOLDER = "vlm"  # a release's own copy of a local VLM backbone (aggregator/tools/release.py)


def checkpoint_dir(path: str | Path) -> Path:
    """A LeRobot ``save_pretrained`` folder (a release folder is one): config.json and model.safetensors."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"no folder at {path}: give a release folder or a checkpoint (checkpoints/round_<r>)")
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
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
            return get_policy_class(config.type).from_pretrained(path, config=config)
    except Exception as err:  # LeRobot and the Hub client raise many types; the user needs the one line
        raise UserError(f"LeRobot cannot load the policy in {path}: {type(err).__name__}: {err}") from None


def model_hash(path: str | Path) -> str:
    """``params_hash`` of the policy's trainable arrays in exchange order: the hash ``closeRound`` records."""
    from node.params import get_trainable
    from prover.hashing import params_hash

    return params_hash(list(get_trainable(load_policy(path)).values()))


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
    records = [Contributor(r.node, r.status.name, r.reason.name, r.signed, r.proof_verified, r.update_hash,
                           r.proof_hash, r.data_commitment, r.loss_before, r.loss_after, e["tx_hash"])
               for e in events for r in [registry.record_of_event(e)]]
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
