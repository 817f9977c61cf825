"""The node's Flower ClientApp: train on private data (FedProx) and reply with the trainable parameters.

The same app runs in Flower's simulation engine (one setup per partition) and under a real SuperNode started by
``zk0node start`` (the setup comes from the SuperNode's ``--node-config``). Model and dataset are loaded once per
process and reused across rounds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from node.contribution import (
    RoundTerms,
    check_global,
    check_pinned,
    contribution_record,
    prove_update,
    wallet_account,
)
from node.datasets import load_dataset, load_metadata
from node.dp import DPConfig, check_budget, privatize
from node.drift import MEAN_UPDATE, MEAN_UPDATE_ROUND, drift_shift, own_update, remember, shifting
from node.errors import UserError
from node.frames import FrameCache, in_memory
from node.logs import single_flower_output
from node.lora import check_frozen, config_rank
from node.model import make_smolvla
from node.outcomes import decode_outcomes, outcome_line
from node.params import pack, unpack
from node.train import TrainConfig, TrainResult, evaluate_loss, fedprox_train, snapshot

log = logging.getLogger(__name__)
# A ClientApp process under a SuperNode prints only Flower's logger: where each message's time went goes there.
timing_log = logging.getLogger("flwr")


@dataclass(frozen=True)
class NodeSetup:
    """What one node runs with: its private dataset and the model spec the federation agreed on."""

    dataset: str
    model: str = "tiny"
    cache_dir: str = ".zk0/fixtures"
    device: str = "cpu"
    wallet: str | None = None  # keystore file; its password comes from ZK0_WALLET_PASSWORD, never the config
    srs: str = "dev"  # "dev" (development SRS in cache_dir) or the federation's SRS file
    dp_max_epsilon: float | None = None  # refuse rounds that would spend more privacy than this (node/dp.py)
    registry: str | None = None  # the registry this node signs for (None: the round's)
    chain_id: int | None = None  # the chain of that registry (None: the round's)
    lora_rank: int | None = None  # LoRA mode's rank this node trains at (None: the federation's, ``for_round``)

    @classmethod
    def from_node_config(cls, node_config: dict, run_config: dict) -> NodeSetup:
        """Deployment: ``zk0node start`` passes the dataset (and wallet) as SuperNode node-config."""
        if "dataset" not in node_config:
            raise UserError("this SuperNode has no 'dataset' in its node-config: start it with zk0node start")
        return cls(
            dataset=str(node_config["dataset"]),
            model=str(run_config.get("model", "tiny")),
            cache_dir=str(node_config.get("cache-dir", run_config.get("cache-dir", ".zk0/fixtures"))),
            device=str(node_config.get("device", "cpu")),
            wallet=node_config.get("wallet") or None,
            srs=str(node_config.get("srs", "dev")),
            dp_max_epsilon=float(node_config["dp-max-epsilon"]) if "dp-max-epsilon" in node_config else None,
            registry=str(node_config["registry"]) if "registry" in node_config else None,
            chain_id=int(node_config["chain-id"]) if "chain-id" in node_config else None,
            lora_rank=int(node_config["lora-rank"]) if "lora-rank" in node_config else None,
        )

    def for_round(self, config) -> NodeSetup:
        """This setup for a round of the federation (its config): the model at the round's LoRA rank. A node set
        for another rank (node-config ``lora-rank``) refuses: it would train, prove and sign another model."""
        rank = config_rank(config)
        if self.lora_rank is not None and self.lora_rank != rank:
            raise UserError(f"this federation trains LoRA rank {rank} (0: full updates), this node is set for rank "
                            f"{self.lora_rank} (its node-config lora-rank): refusing the round")
        return replace(self, lora_rank=rank)


@dataclass
class LocalNode:
    """A node's loaded state: the policy bundle and its training dataset."""

    setup: NodeSetup
    bundle: object
    dataset: object


@cache
def load_node(setup: NodeSetup) -> LocalNode:
    """Build the policy and load the dataset once per process (Flower reuses the process across rounds)."""
    from lerobot.datasets.factory import resolve_delta_timestamps

    torch.set_num_threads(max(1, int(os.environ.get("ZK0_TORCH_THREADS", "1"))))
    meta = load_metadata(setup.dataset)
    bundle = make_smolvla(setup.model, meta, Path(setup.cache_dir), device=setup.device,
                          lora_rank=setup.lora_rank or 0)
    dataset = load_dataset(setup.dataset, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    dataset = in_memory(dataset, bundle.config.chunk_size)
    log.info("node ready: %s, %d frames%s", setup.dataset, len(dataset),
             " (decoded in memory)" if isinstance(dataset, FrameCache) else "")
    return LocalNode(setup, bundle, dataset)


def train_config(config: ConfigRecord) -> TrainConfig:
    """The server's round config → this node's training settings."""
    return TrainConfig(
        steps=int(config["local-steps"]),
        batch_size=int(config["batch-size"]),
        learning_rate=float(config["learning-rate"]),
        proximal_mu=float(config["proximal-mu"]),
        seed=int(config.get("seed", 0)) + int(config["server-round"]),
        progress=False,
        keep_optimizer=bool(config.get("keep-optimizer", False)),
    )


OPTIMIZER_STATE = "optimizer-state"  # the node's key in its Flower context.state for its optimizer's moments


def train_round(node: LocalNode, content: RecordDict, dp_rng: np.random.Generator | None = None,
                state: RecordDict | None = None) -> RecordDict:
    """One round on the node, top to bottom: check the terms, train (FedProx), clip and noise the update when the
    federation runs with DP, prove, sign; the reply's content. The proof and the signature are over what is sent.

    ``dp_rng``: tests only (the DP noise comes from fresh OS entropy otherwise, never from the public seed).
    ``state``: the node's own Flower ``context.state``, kept by its SuperNode across rounds. With the round's
    ``keep-optimizer``, the optimizer's moments of the last round live there, never in the reply; with its
    ``drift-correction``, the update it trained last round (node/drift.py), paired with the mean update the server
    sends beside the global model.
    """
    config = content["config"]
    terms = RoundTerms.from_config(config)
    global_arrays = unpack(content["arrays"], content["layout"])
    check_frozen(node.bundle.policy, config)
    if terms is not None:
        check_pinned(terms, node.setup.registry, node.setup.chain_id)
        check_global(global_arrays, terms.global_hash)
    dp = DPConfig.from_round_config(config)
    check_budget(dp, int(config["server-round"]), node.setup.dp_max_epsilon)
    cfg = train_config(config)
    cfg.keep_optimizer = cfg.keep_optimizer and state is not None
    kept = state[OPTIMIZER_STATE].to_torch_state_dict() if cfg.keep_optimizer and OPTIMIZER_STATE in state else None
    drift = bool(config.get("drift-correction", False)) and state is not None
    shift = correction(content, state, cfg.steps) if drift else None
    result = fedprox_train(node.bundle, node.dataset, global_arrays, cfg, optimizer_state=kept,
                           after_step=shifting(node.bundle.policy, shift) if shift is not None else None)
    if cfg.keep_optimizer:
        state[OPTIMIZER_STATE] = ArrayRecord(result.optimizer_state)
    sent = snapshot(node.bundle.policy)
    if drift:
        remember(state, global_arrays, sent, int(config["server-round"]))
    if dp is not None:
        sent = privatize(global_arrays, sent, dp, dp_rng)
    reply = reply_content(sent, result)
    if dp is not None:
        reply["metrics"].update(dp_metrics(dp, int(config["server-round"])))
    if terms is not None:
        account = node_wallet(node)
        t0 = time.perf_counter()
        artifact = prove_update(node.bundle, node.dataset, global_arrays, sent, terms, node.setup.srs,
                                node.setup.cache_dir, seed=cfg.seed)
        reply["metrics"]["prove_seconds"] = time.perf_counter() - t0
        reply["contribution"] = ConfigRecord(contribution_record(terms, sent, artifact, account))
    log.info("round %s: trained %d steps, loss %.4f -> %.4f", config["server-round"], result.steps,
             result.loss_first, result.loss_last)
    return reply


def correction(content: RecordDict, state: RecordDict, steps: int) -> dict[str, np.ndarray] | None:
    """Each local step's drift correction (node/drift.py), or None: in the run's first round, after a round that
    kept the global model (no mean update is sent), or when this node did not train the round the mean is from."""
    if MEAN_UPDATE not in content:
        return None
    own = own_update(state, int(content["config"][MEAN_UPDATE_ROUND]))
    if own is None:
        return None
    mean = unpack(content[MEAN_UPDATE], content["layout"])
    if set(mean) != set(own):
        raise ValueError("the mean update's arrays are not the model's")
    return drift_shift(mean, own, steps)


def reply_content(sent: dict, result: TrainResult) -> RecordDict:
    """The reply's arrays and training metrics (the contribution record is added when the round is verified)."""
    metrics = MetricRecord({
        "num-examples": result.num_examples,
        "train_loss": result.loss_mean,
        "train_loss_first": result.loss_first,
        "train_loss_last": result.loss_last,
        "train_seconds": result.seconds,
    })
    return RecordDict({**pack(sent), "metrics": metrics})


def dp_metrics(dp: DPConfig, server_round: int) -> dict[str, float]:
    """The privacy this node has spent so far: ε at δ after ``server_round`` noised releases (an upper bound for a
    node that skipped rounds); no ε without noise (∞). Only the settings and ε: the update's own norm is private."""
    metrics = {"dp_clip": dp.clip, "dp_noise_multiplier": dp.noise_multiplier, "dp_delta": dp.delta}
    if dp.noise_multiplier > 0:
        metrics["dp_epsilon"] = dp.epsilon(server_round)
    return metrics


def node_wallet(node: LocalNode):
    """The account that signs this node's contributions."""
    if node.setup.wallet is None:
        raise UserError("this federation verifies contributions: the node needs a wallet (--wallet)")
    return wallet_account(node.setup.wallet)


TrainFn = Callable[[LocalNode, RecordDict, Context], RecordDict]


def report_outcomes(content: RecordDict) -> int:
    """Log one line per outcome of this node's earlier replies that the message carries (``node.outcomes``);
    returns how many."""
    outcomes = decode_outcomes(content["config"] if "config" in content else None)
    for outcome in outcomes:
        line = outcome_line(outcome)
        timing_log.info("zk0 outcome, %s", line)  # the SuperNode's log: zk0node.log
        log.info("outcome, %s", line)
    return len(outcomes)


@dataclass
class MessageClock:
    """Where one message's time went in this process: ``start`` from the process's start (Python, imports, Flower
    pulling the task and installing the bundle) to our handler, ``load`` the node's model and dataset, then the
    work; one log line per message."""

    t0: float
    laps: dict

    @classmethod
    def start(cls) -> MessageClock:
        import psutil

        return cls(time.perf_counter(), {"start": max(0.0, time.time() - psutil.Process().create_time())})

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.t0
        self.t0 = now

    def report(self, kind: str, msg: Message, metrics: MetricRecord | None = None) -> None:
        self.lap("work")
        if metrics is not None:  # the work of a train message: training, then the proof (when verified)
            self.laps.update({k: float(metrics[f"{k}_seconds"]) for k in ("train", "prove")
                              if f"{k}_seconds" in metrics})
        timing_log.info("zk0 %s message, round %s: %s", kind, msg.content["config"].get("server-round", "?"),
                        ", ".join(f"{k} {v:.2f}s" for k, v in self.laps.items()))


def make_client_app(resolve: Callable[[Context], NodeSetup], train_fn: TrainFn | None = None) -> ClientApp:
    """A ClientApp whose node setup comes from ``resolve(context)``.

    ``train_fn`` replaces the honest round (the test-only ``attacks`` package builds its nodes this way). A train
    message and the run's closing ``query`` message may carry the outcomes of this node's earlier replies: each is
    logged on one line (``report_outcomes``).
    """
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        clock = MessageClock.start()
        single_flower_output()
        report_outcomes(msg.content)
        node = load_node(resolve(context).for_round(msg.content["config"]))
        clock.lap("load")
        content = (train_fn(node, msg.content, context) if train_fn
                   else train_round(node, msg.content, state=context.state))
        clock.report("train", msg, content["metrics"])
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        clock = MessageClock.start()
        single_flower_output()
        config = msg.content["config"]
        node = load_node(resolve(context).for_round(config))
        clock.lap("load")
        loss, n = evaluate_loss(node.bundle, node.dataset, unpack(msg.content["arrays"], msg.content["layout"]),
                                max_batches=int(config.get("eval-batches", 2)))
        clock.lap("eval")
        clock.report("evaluate", msg)
        return Message(RecordDict({"metrics": MetricRecord({"eval_loss": loss, "num-examples": n})}), reply_to=msg)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        """The run's closing message: the outcomes not told yet (the last round's). Nothing is loaded."""
        single_flower_output()
        return Message(RecordDict({"metrics": MetricRecord({"outcomes": report_outcomes(msg.content)})}),
                       reply_to=msg)

    return app


def _from_context(context: Context) -> NodeSetup:
    return NodeSetup.from_node_config(dict(context.node_config), dict(context.run_config))


app = make_client_app(_from_context)
