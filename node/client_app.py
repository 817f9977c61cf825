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
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from node.adversary import Attack
from node.contribution import RoundTerms, check_global, contribution_record, prove_update, wallet_account
from node.datasets import load_dataset, load_metadata
from node.errors import UserError
from node.model import make_smolvla
from node.params import arrays_to_numpy, numpy_to_arrays
from node.train import TrainConfig, evaluate_loss, fedprox_train, snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeSetup:
    """What one node runs with: its private dataset and the model spec the federation agreed on."""

    dataset: str
    model: str = "tiny"
    cache_dir: str = ".zk0/fixtures"
    device: str = "cpu"
    wallet: str | None = None  # keystore file; its password comes from ZK0_WALLET_PASSWORD, never the config
    srs: str = "dev"  # "dev" (development SRS in cache_dir) or the federation's SRS file
    adversary: str | None = None  # testing only: an attack from node.adversary.ATTACKS

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
            adversary=node_config.get("adversary") or None,
        )


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
    bundle = make_smolvla(setup.model, meta, Path(setup.cache_dir), device=setup.device)
    dataset = load_dataset(setup.dataset, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    dataset = Attack(setup.adversary).dataset(dataset)  # honest nodes: unchanged
    log.info("node ready: %s, %d frames", setup.dataset, len(dataset))
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
    )


REPLAY_KEYS = ("replay.arrays", "replay.metrics", "replay.contribution")


def train_round(node: LocalNode, content: RecordDict, state: RecordDict) -> RecordDict:
    """One round on the node: check the terms, train (FedProx), prove, sign; the reply's content.

    ``state`` is Flower's per-node state (``context.state``), kept across rounds by the engine: a replaying
    adversary keeps its first reply there (a process may serve several simulated nodes).
    """
    config = content["config"]
    attack = Attack(node.setup.adversary)
    terms = RoundTerms.from_config(config)
    global_arrays = arrays_to_numpy(content["arrays"])
    if terms is not None:
        check_global(global_arrays, terms.global_hash)
    if attack.replays and REPLAY_KEYS[0] in state:
        arrays, metrics, contribution = (state[k] for k in REPLAY_KEYS)
        return RecordDict({"arrays": arrays, "metrics": metrics, "contribution": contribution})
    cfg = train_config(config)
    result = fedprox_train(node.bundle, node.dataset, global_arrays, cfg)
    attack.check_alive(int(config["server-round"]))
    node_arrays = snapshot(node.bundle.policy)
    sent = attack.sent(global_arrays, node_arrays, cfg.seed)
    metrics = MetricRecord({
        "num-examples": result.num_examples,
        "train_loss": result.loss_mean,
        "train_loss_first": result.loss_first,
        "train_loss_last": result.loss_last,
        "train_seconds": result.seconds,
    })
    reply = RecordDict({"arrays": numpy_to_arrays(sent), "metrics": metrics})
    if terms is not None:
        if node.setup.wallet is None:
            raise UserError("this federation verifies contributions: the node needs a wallet (--wallet)")
        account = wallet_account(node.setup.wallet)
        t0 = time.perf_counter()
        proven = attack.proven(global_arrays, node_arrays, sent)
        artifact = prove_update(node.bundle, node.dataset, global_arrays, proven, terms, node.setup.srs,
                                node.setup.cache_dir, seed=cfg.seed)
        metrics["prove_seconds"] = time.perf_counter() - t0
        reply["contribution"] = ConfigRecord(contribution_record(terms, sent, attack.artifact(artifact),
                                                                 attack.signer(account), account.address))
    log.info("round %s: trained %d steps, loss %.4f -> %.4f", config["server-round"], result.steps,
             result.loss_first, result.loss_last)
    if attack.replays and "contribution" in reply:
        for key, name in zip(REPLAY_KEYS, ("arrays", "metrics", "contribution"), strict=True):
            state[key] = reply[name]
    return reply


def make_client_app(resolve: Callable[[Context], NodeSetup]) -> ClientApp:
    """A ClientApp whose node setup comes from ``resolve(context)``."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        node = load_node(resolve(context))
        return Message(train_round(node, msg.content, context.state), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        node = load_node(resolve(context))
        config = msg.content["config"]
        loss, n = evaluate_loss(node.bundle, node.dataset, arrays_to_numpy(msg.content["arrays"]),
                                max_batches=int(config.get("eval-batches", 2)))
        return Message(RecordDict({"metrics": MetricRecord({"eval_loss": loss, "num-examples": n})}), reply_to=msg)

    return app


def _from_context(context: Context) -> NodeSetup:
    return NodeSetup.from_node_config(dict(context.node_config), dict(context.run_config))


app = make_client_app(_from_context)
