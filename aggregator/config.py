"""The federation's configuration: one dataclass, validated once, read from Flower's run config or built in code."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

from aggregator.operator import OPERATOR_KEYS, VERDICT_KEYS
from node.dp import DEFAULT_CLIP, DEFAULT_DELTA, DPConfig
from node.errors import UserError
from node.thresholds import DRIFT_RISE_TOLERANCE, gate_thresholds


def _flag(name: str) -> str:
    """A field as the run config names it (``local_steps`` → ``local-steps``)."""
    return name.replace("_", "-")


# Secrets of a deployed run come from the ServerApp process's environment (zk0agg start sets them on the SuperLink,
# whose ServerApp processes inherit them), never from the run config: Flower sends the run config to every node.
SECRET_ENV = {"aggregator_key": "ZK0_AGGREGATOR_KEY", "verifier_token": "ZK0_VERIFIER_TOKEN"}


# Where an operator sets each verdict setting (aggregator.operator.VERDICT_KEYS): zk0agg run's flags
VERDICT_FLAGS = {name: "--" + name.replace("_", "-") for name in VERDICT_KEYS}


SIM_TASKS = ("reach", "pick_place")  # sim.TASKS' names (sim is not imported here: it loads MuJoCo)
MEASURED = -1.0  # a gate threshold left to the model spec's measured value
SELECTIONS = ("usefulness", "multikrum")  # aggregator.protocol.selection's rule, or Multi-Krum's
SERVER_OPTIMIZERS = ("none", "avgm", "adam")  # aggregator.protocol.server_optimizer.KINDS (not imported: flwr)
LR_SCHEDULES = ("constant", "cosine")  # the nodes' learning rate round by round (FederationConfig.learning_rate_at)
# The smallest value each numeric run setting may take (the others are checked below: rates, fractions, DP).
_AT_LEAST = {"local_steps": 1, "batch_size": 1, "proximal_mu": 0, "eval_batches": 1, "client_eval_batches": 1,
             "timeout": 1, "seed": 0, "slice_rows": 1, "lora_rank": 0, "chain_drain_timeout": 0, "sim_eval_episodes": 0,
             "sim_max_steps": 0}


@dataclass
class FederationConfig:
    """Everything the aggregator decides for a run; sent to nodes as each round's config where they need it."""

    rounds: int = 3
    local_steps: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-3
    # The learning rate each round sends (learning_rate_at): "constant", or "cosine" from learning_rate down over
    # the run's rounds (FedAvg on non-IID data needs a decaying rate to converge: docs/fed-vs-central.md "Levers").
    lr_schedule: str = "constant"
    proximal_mu: float = 0.01
    krum_f: int = 0  # Byzantine nodes Krum tolerates; it needs more than 2f + 2 verified replies
    krum_m: int = 2  # replies MultiKrum averages (1 = classic Krum)
    min_nodes: int = 3
    model: str = "tiny"
    # LoRA mode (node/lora.py): nodes train and send rank-r adapters of the model, whose base stays fixed for the
    # run; 0: the whole trainable set travels. The operator's (a verdict setting): every node must train the same.
    lora_rank: int = 0
    heldout: str = ""  # dataset URI of the server's held-out evaluation set
    # The validation gate (aggregator/protocol/validation.py): a dataset no node trains on, distinct from the
    # held-out set.
    validation: str = ""  # dataset URI; empty: no validation score (every verified reply may be selected)
    validation_batches: int = 4  # k batches per round, drawn from the round's seed
    validation_batch_size: int = 8
    validation_threads: int = 1  # torch threads while scoring (1 suits the tiny model; more for full size)
    # The gate's thresholds; MEASURED (-1): the ones measured for the model spec (node/thresholds.py,
    # docs/benchmarks.md). A Flower run config has no "unset", so the app declares them as -1.
    harm_tolerance: float = MEASURED  # τ: score s < −τ is HARMFUL
    rise_tolerance: float = MEASURED  # ρ: a proven loss rising by more than this fraction is NO_IMPROVEMENT
    min_gain: float = MEASURED  # a reply is averaged in only if its score is above min_gain × L_val(θ_g)
    # Who is averaged and with what weight (aggregator/protocol/selection.py, docs/security.md "Selection"):
    # "usefulness" weighs every useful verified reply by its score (needs a validation set); "multikrum" averages
    # Krum's m best-ranked useful replies with equal weights (the rule before; always used without validation).
    selection: str = "usefulness"
    # The server's step along the verified mean (aggregator/protocol/server_optimizer.py): "none" (the mean is the
    # new global model), "avgm" (FedAvgM: momentum) or "adam" (FedAdam). Operator settings: they shape the aggregate.
    server_optimizer: str = "none"
    server_lr: float = 1.0  # η
    server_momentum: float = 0.9  # FedAvgM's β, FedAdam's β1
    # Each node keeps its optimizer's state (AdamW's moments) from round to round, on the node only
    # (node/client_app.py), so a round does not start with a fresh Adam's large first steps (measured: no effect
    # in 8 rounds, docs/fed-vs-central.md "Levers").
    keep_optimizer: bool = False
    # Each node corrects its local steps for its data's drift (node/drift.py: SCAFFOLD's control variates from the
    # last round's averaged update, which the server then sends beside the global model, and the node's own).
    drift_correction: bool = False
    out_dir: str = "outputs/run"
    cache_dir: str = ".zk0/fixtures"
    eval_batches: int = 4
    client_eval_batches: int = 2
    fraction_evaluate: float = 1.0
    timeout: float = 600.0  # seconds to wait for replies in a round
    seed: int = 0
    resume: bool = False  # continue the run in out_dir: its summary.json, last checkpoint and chain journal
    # The verified protocol (proofs, signatures, chain records). Off: plain Krum federation.
    verify: bool = False
    srs: str = "dev"  # "dev" (development SRS: forgeable, tests and demos only) or the federation's SRS file
    slice_rows: int = 16  # m: positions of the node's data the proof covers
    chain_rpc: str = ""
    registry: str = ""
    aggregator_key: str = ""  # never from a config file in production: zk0agg reads it from a file or env
    onchain_verify: bool = False
    verifier_url: str = ""  # the verifier service; empty: verify in-process
    verifier_token: str = ""
    chain_drain_timeout: float = 60.0  # seconds to wait at the end of a run for the journal to reach the chain
    # Closed-loop evaluation in the MuJoCo SO-100 world after each round (0 episodes: off).
    sim_eval_episodes: int = 0
    sim_task: str = "pick_place"
    sim_max_steps: int = 0  # 0: the task's own limit
    # Weights & Biases: one W&B run per federated run (aggregator.wandb_log); offline without a key or network.
    wandb: bool = False
    # Client-side differential privacy (node/dp.py, docs/privacy.md): each node clips its update to dp_clip and adds
    # Gaussian noise of std σ·dp_clip. Off unless one of dp_epsilon, dp_noise_multiplier, dp_clip is set.
    dp_epsilon: float = 0.0  # target ε (at dp_delta) over the run's rounds: σ calibrated by the accountant
    dp_noise_multiplier: float = 0.0  # or σ directly
    dp_clip: float = 0.0  # C (0: node.dp.DEFAULT_CLIP once DP is on); alone, without ε or σ: clipping only (ε = ∞)
    dp_delta: float = DEFAULT_DELTA

    def __post_init__(self) -> None:
        self._check_types()
        measured = gate_thresholds(self.model)
        if self.drift_correction and self.rise_tolerance == MEASURED:
            self.rise_tolerance = max(measured.rise_tolerance, DRIFT_RISE_TOLERANCE)
        for name in ("harm_tolerance", "rise_tolerance", "min_gain"):
            if getattr(self, name) == MEASURED:
                setattr(self, name, getattr(measured, name))
        for name, minimum in _AT_LEAST.items():
            if getattr(self, name) < minimum:
                raise UserError(f"{_flag(name)} must be at least {minimum:g}, not {getattr(self, name)!r}")
        if self.learning_rate <= 0:
            raise UserError(f"learning-rate must be above 0, not {self.learning_rate!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"lr-schedule {self.lr_schedule!r} is not a schedule: {' or '.join(LR_SCHEDULES)}")
        if self.sim_task not in SIM_TASKS:
            raise UserError(f"sim-task {self.sim_task!r} is not a simulated task: {' or '.join(SIM_TASKS)}")
        if self.rounds < 1:
            raise UserError("rounds must be at least 1")
        if self.krum_f < 0 or self.krum_m < 1:
            raise UserError("krum_f must be >= 0 and krum_m >= 1")
        if self.min_nodes < 1:
            raise UserError("min_nodes must be at least 1")
        if not 0.0 <= self.fraction_evaluate <= 1.0:
            raise UserError("fraction_evaluate must be in [0, 1]")
        if self.verify and not (self.chain_rpc and self.registry and self.aggregator_key):
            raise UserError("a verified federation needs chain_rpc, registry and aggregator_key (the operator's: "
                            "zk0agg start --chain-rpc --registry with the aggregator key)")
        if self.slice_rows < 1:
            raise UserError("slice_rows must be at least 1")
        if self.validation_batches < 1 or self.validation_batch_size < 1 or self.validation_threads < 1:
            raise UserError("validation_batches, validation_batch_size and validation_threads must be at least 1")
        if self.selection not in SELECTIONS:
            raise UserError(f"selection {self.selection!r} is not a selection rule: {' or '.join(SELECTIONS)}")
        try:
            self.server_step_settings()
        except ValueError as err:
            raise UserError(str(err)) from None
        if self.harm_tolerance < 0 or self.rise_tolerance < 0 or self.min_gain < 0:
            raise UserError("harm_tolerance, rise_tolerance and min_gain must be >= 0")
        if min(self.dp_epsilon, self.dp_noise_multiplier, self.dp_clip) < 0:
            raise UserError("dp_epsilon, dp_noise_multiplier and dp_clip must be >= 0 (0: not set)")
        if self.dp_epsilon > 0 and self.dp_noise_multiplier > 0:
            raise UserError("give dp_epsilon (a privacy budget, σ is calibrated) or dp_noise_multiplier (σ), not both")
        if self.dp_enabled:
            DPConfig(self.dp_clip or DEFAULT_CLIP, self.dp_noise_multiplier, self.dp_delta)  # checks C and δ

    def _check_types(self) -> None:
        """Every value has its field's type (an int where an int is due, a finite number where a float is), so a
        run config's ``local-steps=abc`` or ``learning-rate=nan`` is refused when the run is parsed, not mid-round."""
        for f in fields(self):
            value, kind = getattr(self, f.name), f.type
            if kind == "bool":
                ok = isinstance(value, bool)
            elif kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif kind == "float":
                ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                if ok:
                    setattr(self, f.name, float(value))
            else:
                ok = isinstance(value, str)
            if not ok:
                what = {"bool": "true or false", "int": "an integer", "float": "a finite number"}.get(kind, "a string")
                raise UserError(f"{_flag(f.name)} must be {what}, not {value!r}")

    @classmethod
    def from_run_config(cls, run_config: dict, environ: dict | None = None,
                        operator: dict | None = None) -> FederationConfig:
        """Flower run config (``[tool.flwr.app.config]``, kebab-case keys) → config; unknown keys are ignored.

        A run chooses the learning only. The secrets (``SECRET_ENV``) come from ``environ`` (default: this process's
        environment), the endpoints, trust settings and verdict rules (``OPERATOR_KEYS``) from ``operator``
        (``aggregator.operator.operator_settings``): a run config naming any of them is refused.
        """
        environ = os.environ if environ is None else environ
        known = {f.name: f.type for f in fields(cls)}
        values = {}
        for key, value in run_config.items():
            name = key.replace("-", "_")
            if name in SECRET_ENV:
                raise UserError(f"{key} must not be in the run config (Flower sends it to every node): set "
                                f"{SECRET_ENV[name]} in the SuperLink's environment instead")
            if name in VERDICT_KEYS:
                raise UserError(f"{key} must not be in the run config: it decides verdicts or rewards, so it is the "
                                f"aggregator operator's (zk0agg run {VERDICT_FLAGS[name]} on the aggregator's "
                                "machine), never a run's")
            if name in OPERATOR_KEYS:
                raise UserError(f"{key} must not be in the run config: it is the aggregator operator's setting "
                                "(zk0agg start, or zk0agg run on the aggregator's machine), never a run's")
            if name in known:
                values[name] = value
        for name, value in (operator or {}).items():
            if name not in OPERATOR_KEYS:
                raise UserError(f"{name} is not an operator setting (those are {', '.join(OPERATOR_KEYS)})")
            values[name] = value
        for name, env in SECRET_ENV.items():
            values[name] = environ.get(env, "")
        return cls(**values)

    def to_dict(self) -> dict:
        """The config as recorded in summary.json and W&B (secrets left out, credentials cut from the URLs)."""
        from contracts.endpoints import redact_url

        out = asdict(self)
        out["aggregator_key"] = "***" if self.aggregator_key else ""
        out["verifier_token"] = "***" if self.verifier_token else ""
        out["chain_rpc"], out["verifier_url"] = redact_url(self.chain_rpc), redact_url(self.verifier_url)
        return out

    @property
    def dp_enabled(self) -> bool:
        return self.dp_epsilon > 0 or self.dp_noise_multiplier > 0 or self.dp_clip > 0

    def dp(self) -> DPConfig | None:
        """The run's DP settings, σ calibrated from ``dp_epsilon`` over ``rounds`` (Opacus); None: no DP."""
        if not self.dp_enabled:
            return None
        clip = self.dp_clip or DEFAULT_CLIP
        if self.dp_epsilon > 0:
            return DPConfig.for_epsilon(self.dp_epsilon, self.rounds, clip, self.dp_delta)
        return DPConfig(clip, self.dp_noise_multiplier, self.dp_delta)

    def learning_rate_at(self, round_: int) -> float:
        """The nodes' learning rate in round ``round_`` (1-based) of ``rounds``: cosine starts at ``learning_rate``
        and ends near 0 (½(1 + cos(π(r − 1)/R))). A benchmark's centralized run follows the same rates, round by
        round of its steps (scripts/fed_vs_central.py)."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (min(round_, self.rounds) - 1) / self.rounds))

    def server_step_settings(self):
        """The server optimizer's public settings (``aggregator.protocol.server_optimizer.ServerOptimizer``)."""
        from aggregator.protocol.server_optimizer import ServerOptimizer

        return ServerOptimizer(self.server_optimizer, self.server_lr, self.server_momentum)

    def krum_quorum(self) -> int:
        """The fewest verified replies Krum can work with: n > 2f + 2."""
        return 2 * self.krum_f + 3
