"""An attacking node's round: the honest node's own steps (``node.client_app``, ``node.contribution``), with the
attack's piece in place of the honest one at each step it changes."""

from __future__ import annotations

import time
from dataclasses import replace

from flwr.app import ConfigRecord, Context, RecordDict

from attacks.library import Attack
from node.client_app import LocalNode, node_wallet, reply_content, train_config
from node.contribution import RoundTerms, capture_update, check_global, contribution_record, round_circuit
from node.params import unpack
from node.train import fedprox_train, snapshot
from prover import prove

REPLAYED = ("arrays", "layout", "metrics", "contribution")  # the reply's records, kept as "replay.<name>"


def attack_round(attack: Attack, node: LocalNode, content: RecordDict, state: RecordDict) -> RecordDict:
    """One round of an attacking node. ``state`` is Flower's per-node state (``context.state``), kept across rounds:
    a replaying node keeps its first reply there (one process may serve several simulated nodes)."""
    config = content["config"]
    terms = RoundTerms.from_config(config)
    global_arrays = unpack(content["arrays"], content["layout"])
    if terms is not None:
        check_global(global_arrays, terms.global_hash)
    if attack.replays and f"replay.{REPLAYED[0]}" in state:
        return RecordDict({name: state[f"replay.{name}"] for name in REPLAYED})
    node = replace(node, dataset=attack.dataset(node.dataset))
    cfg = train_config(config)
    result = fedprox_train(node.bundle, node.dataset, global_arrays, cfg)
    attack.check_alive(int(config["server-round"]))
    node_arrays = snapshot(node.bundle.policy)
    sent = attack.sent(global_arrays, node_arrays, cfg.seed)
    reply = reply_content(sent, result)
    if terms is not None:
        account = node_wallet(node)
        t0 = time.perf_counter()
        circuit = round_circuit(node.bundle, terms, node.setup.srs, node.setup.cache_dir)
        proven = attack.proven(global_arrays, node_arrays, sent)
        slice_ = capture_update(node.bundle, node.dataset, global_arrays, proven, terms.slice_rows, cfg.seed)
        artifact = attack.artifact(prove(circuit, attack.witness(slice_)))
        reply["metrics"]["prove_seconds"] = time.perf_counter() - t0
        reply["contribution"] = ConfigRecord(contribution_record(terms, sent, artifact, attack.signer(account),
                                                                 account.address))
        if attack.replays:
            for name in REPLAYED:
                state[f"replay.{name}"] = reply[name]
    return reply


def attack_train_fn(kinds: list[str | None]):
    """A ``make_client_app`` train function: simulated node ``partition-id`` runs ``kinds[i]`` (None: honest)."""
    from node.client_app import train_round

    def train(node: LocalNode, content: RecordDict, context: Context) -> RecordDict:
        kind = kinds[int(context.node_config["partition-id"])]
        if kind is None:
            return train_round(node, content)
        return attack_round(Attack(kind), node, content, context.state)

    return train
