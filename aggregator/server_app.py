"""The aggregator's Flower ServerApp: one round of the protocol (DESIGN.md §3), top to bottom.

Flower's ``Strategy.start`` drives the rounds; each protocol step sits in one place:

1. Open + 2. Broadcast — ``GatedMultiKrum.configure_train``: hash θ_g, send it with the round config.
3-5. Train, prove, sign — on the nodes (``node.client_app``).
6. Gate + 7. Aggregate — ``GatedMultiKrum.aggregate_train``: ``Gate`` then Flower's Krum on verified replies.
9. Evaluate and save — ``evaluate_round`` below: held-out loss, metrics, charts, checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from aggregator.config import FederationConfig
from aggregator.outputs import RunOutputs
from aggregator.protocol.gate import STRUCTURAL_CHECKS, VERIFIED_CHECKS, Gate
from aggregator.protocol.intake import ArrivalGrid, RunInterrupted
from aggregator.protocol.notices import CLOSING_TIMEOUT, OutcomeNotices, round_rewards
from aggregator.protocol.server_optimizer import ServerState
from aggregator.protocol.strategy import GatedMultiKrum
from aggregator.protocol.validation import ValidationConfig, Validator
from aggregator.run_folder import JOURNAL_FILE, claim_run_folder, stop_requested
from contracts import ChainUnavailable
from node.datasets import load_dataset, load_metadata
from node.errors import UserError
from node.logs import setup_logging
from node.lora import adapter_key, is_lora
from node.lora import round_config as lora_round_config
from node.model import make_smolvla
from node.params import get_trainable, pack, trainable_names, unpack
from node.train import evaluate_loss
from prover.hashing import params_hash

log = logging.getLogger(__name__)

# summary.json's names a reader may take for one another, explained in the file itself (its "legend"): the keys
# stay as they are, for the tools that read them.
SERVER_STATE_FILE = "server-optimizer.npz"  # the server optimizer's state after a round, beside its checkpoint
SUMMARY_LEGEND = {
    "run_id": "this run's name: its output folder's name (W&B and release names use it); not on chain",
    "chain.run_id": "the run's bytes32 id on the registry: nodes sign it, the chain keys rounds and records by it",
    "rounds[].nodes[].proof_bytes": "bytes of the proof artifact the node sent (JSON: the proof in hex, its public "
                                    "values and hashes), about twice the raw EVM proof the registry's verifier "
                                    "checks (its length: zk0agg register-circuit's 'EVM proofs of N bytes')",
    "rounds[].nodes[].tx_hash": "the transaction that recorded the reply's outcome (sent once the round is "
                                "committed: the live round table prints before it, a line after it names it)",
}


@dataclass
class PreviousRun:
    """Where a restarted aggregator picks up: the last round ``summary.json`` records and that round's model."""

    last_round: int
    arrays: OrderedDict[str, np.ndarray]
    summary: dict
    metrics: dict


def previous_run(out_dir: Path, policy) -> PreviousRun | None:
    """The run in ``out_dir`` so far, or None when it has no finished round (a fresh start).

    ``summary.json`` is the truth: a checkpoint written for a round the summary does not have yet (a crash between
    the two) is ignored, and the round runs again. The checkpoint must hash to the round's recorded new global
    model, so a resumed run continues from exactly the model the chain's ``closeRound`` names.
    """
    from safetensors.numpy import load_file

    path = out_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    if not summary.get("rounds"):
        return None
    last = summary["rounds"][-1]
    lora = is_lora(policy)  # LoRA mode: the checkpoint is PEFT's adapter file (node/lora.py)
    ckpt = out_dir / "checkpoints" / f"round_{last['round']}" / ("adapter_model.safetensors" if lora else
                                                                 "model.safetensors")
    key = adapter_key if lora else str
    if not ckpt.exists():
        raise UserError(f"cannot resume: {ckpt} is missing (summary.json records round {last['round']})")
    state = load_file(str(ckpt))
    arrays = OrderedDict((name, state[key(name)].astype(np.float32)) for name in trainable_names(policy))
    if params_hash(list(arrays.values())) != last["new_global_hash"]:
        raise UserError(f"cannot resume: {ckpt} is not the model round {last['round']} ended with")
    metrics_path = out_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"initial": {}, "rounds": []}
    return PreviousRun(last["round"], arrays, summary, metrics)


def load_server_state(out_dir: Path, last_round: int) -> ServerState:
    """The server optimizer's state after ``last_round``, saved beside that round's checkpoint."""
    path = out_dir / "checkpoints" / f"round_{last_round}" / SERVER_STATE_FILE
    if not path.exists():
        raise UserError(f"cannot resume with a server optimizer: {path} is missing")
    with np.load(path) as data:
        return ServerState.from_arrays(dict(data))


def chain_run_id(out_dir: Path, resume: bool, name: str, aggregator_key: str) -> str:
    """The run's id on the registry: a resumed run keeps the one its summary.json names (even before its first
    round is committed); a fresh run draws a new one, so it never meets another run's rounds or records."""
    from eth_account import Account

    from contracts import new_run_id

    path = out_dir / "summary.json"
    if resume and path.exists():
        try:
            known = (json.loads(path.read_text()).get("chain") or {}).get("run_id")
        except ValueError:
            raise UserError(f"cannot resume: {path} is not JSON") from None
        if known:
            return known
    return new_run_id(name, Account.from_key(aggregator_key).address)


def run_federation(grid: Grid, cfg: FederationConfig, console=None) -> dict:
    """Run ``cfg.rounds`` rounds on ``grid``; returns the run summary (also written to ``cfg.out_dir``), which this
    process alone writes while it runs (``claim_run_folder``)."""
    with claim_run_folder(cfg.out_dir, cfg.resume):
        return _run_rounds(grid, cfg, console)


def _run_rounds(grid: Grid, cfg: FederationConfig, console=None) -> dict:
    from lerobot.datasets.factory import resolve_delta_timestamps

    meta = load_metadata(cfg.heldout)
    bundle = make_smolvla(cfg.model, meta, Path(cfg.cache_dir), seed=cfg.seed, lora_rank=cfg.lora_rank)
    heldout = load_dataset(cfg.heldout, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    run_id = Path(cfg.out_dir).name or datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    outputs = RunOutputs(Path(cfg.out_dir), run_id, cfg.to_dict(), console=console)
    outputs.summary["legend"] = SUMMARY_LEGEND
    previous = previous_run(Path(cfg.out_dir), bundle.policy) if cfg.resume else None
    initial_arrays = get_trainable(bundle.policy)
    if previous is not None:
        log.warning("resuming %s after round %d (of %d)", cfg.out_dir, previous.last_round, cfg.rounds)
        initial_arrays = previous.arrays
        for key in ("initial_eval_loss", "final_eval_loss", "rounds"):
            outputs.summary[key] = previous.summary[key]
        outputs.summary["resumed_after"] = [*previous.summary.get("resumed_after", []), previous.last_round]
        outputs.metrics.update(initial=previous.metrics["initial"], rounds=previous.metrics["rounds"])

    verification = None
    if cfg.verify:
        from aggregator.protocol.verification import ChainConfig, Verification

        chain = ChainConfig(cfg.chain_rpc, cfg.registry, cfg.aggregator_key, cfg.onchain_verify)
        checker = None
        if cfg.verifier_url:
            from aggregator.verifier.client import check_services, remote_checker

            check_services(cfg.verifier_url, cfg.verifier_token)  # down or refusing: one line, nothing recorded
            checker = remote_checker(cfg.verifier_url, cfg.verifier_token)  # several services: comma-separated
        chain_run = chain_run_id(Path(cfg.out_dir), cfg.resume, run_id, cfg.aggregator_key)
        verification = Verification.start(bundle.policy, cfg.slice_rows, cfg.srs, cfg.cache_dir, chain,
                                          Path(cfg.out_dir) / JOURNAL_FILE, chain_run,
                                          on_done=outputs.on_chain, checker=checker,
                                          evidence_dir=Path(cfg.out_dir) / "evidence")
        committed = {r["round"]: r["new_global_hash"] for r in (previous.summary["rounds"] if previous else [])}
        verification.resume(committed)
        outputs.set_chain(verification.chain_id, verification.registry.address, run_id=chain_run,
                          circuit_id=verification.circuit_key, prover_circuit_id=verification.circuit.circuit_id,
                          circuit_registered=verification.circuit_registered, srs=verification.circuit.srs.kind,
                          srs_sha256=verification.circuit.srs.sha256)

    validator = None
    if cfg.validation:
        validator = Validator(bundle, load_dataset(cfg.validation, delta_timestamps=heldout.delta_timestamps),
                              ValidationConfig(cfg.validation_batches, cfg.validation_batch_size,
                                               cfg.validation_threads), seed=cfg.seed)
    else:
        log.warning("no validation set: updates are not scored, and any verified reply may be selected")
    wb = None
    if cfg.wandb:
        from aggregator.wandb_log import WandbRun

        wb = WandbRun.start(Path(cfg.out_dir), run_id, {**cfg.to_dict(), "chain": outputs.summary["chain"]},
                            resume=cfg.resume)

    initial = pack(initial_arrays, release=True)  # the wire's records: one vector, its layout beside it
    strategy = GatedMultiKrum(
        layout=initial["layout"],
        gate=Gate(list(VERIFIED_CHECKS if cfg.verify else STRUCTURAL_CHECKS)),
        verification=verification,
        validator=validator,
        harm_tolerance=cfg.harm_tolerance,
        rise_tolerance=cfg.rise_tolerance,
        min_gain=cfg.min_gain,
        selection=cfg.selection,
        hash_arrays=lambda arrays: params_hash(list(arrays.values())),
        num_malicious_nodes=cfg.krum_f,
        num_nodes_to_select=cfg.krum_m,
        fraction_evaluate=cfg.fraction_evaluate,
        min_train_nodes=cfg.min_nodes,
        min_available_nodes=cfg.min_nodes,
        min_evaluate_nodes=max(1, round(cfg.min_nodes * cfg.fraction_evaluate)),
        spill_dir=str(Path(cfg.out_dir)),  # a large round's verified updates wait there for Krum
        server_optimizer=cfg.server_step_settings(),
        learning_rate_at=cfg.learning_rate_at,
        drift_correction=cfg.drift_correction,
    )
    if previous is not None and strategy.server_optimizer.kind != "none":
        strategy.server_state = load_server_state(Path(cfg.out_dir), previous.last_round)
    notices = OutcomeNotices(chain=verification is not None)  # each node is told its outcomes (protocol.notices)
    strategy.notices = notices
    dp = cfg.dp()  # client-side DP (node/dp.py): the nodes clip and noise, the round config tells them how
    if dp is not None:
        outputs.summary["dp"] = {"clip": dp.clip, "noise_multiplier": dp.noise_multiplier, "delta": dp.delta,
                                 "target_epsilon": cfg.dp_epsilon or None, "epsilon_per_round": {}}
        log.info("client-side DP: C = %g, σ = %.4f, δ = %g (ε over %d rounds: %.3f)", dp.clip, dp.noise_multiplier,
                 dp.delta, cfg.rounds, dp.epsilon(cfg.rounds))
    done = previous.last_round if previous is not None else 0
    strategy.round_offset = done
    clock = {"round_start": time.perf_counter()}

    def evaluate_round(server_round: int, arrays) -> MetricRecord | None:
        if server_round == 0 and done:
            return None  # the initial evaluation is in the summary already
        server_round += done
        t0 = time.perf_counter()
        global_arrays = unpack(arrays, strategy.layout)
        loss, _ = evaluate_loss(bundle, heldout, global_arrays, max_batches=cfg.eval_batches, seed=cfg.seed)
        if server_round == 0:  # the untrained policy's closed-loop success too: the floor the rounds are read against
            outputs.initial(loss, **closed_loop_eval(bundle, cfg, Path(cfg.out_dir) / "evaluate" / "round_0"))
            if wb is not None:
                wb.log_initial(loss)
        else:
            ckpt = outputs.save_checkpoint(server_round, bundle)
            if strategy.server_optimizer.kind != "none":  # a resumed run goes on with the same momentum
                np.savez(ckpt / SERVER_STATE_FILE, **strategy.server_state.to_arrays())
            seconds = {"round": t0 - clock["round_start"], "server_eval": time.perf_counter() - t0}
            new_hash = params_hash(list(global_arrays.values()))
            closed_loop = closed_loop_eval(bundle, cfg, Path(cfg.out_dir) / "evaluate" / f"round_{server_round}")
            seconds["closed_loop"] = time.perf_counter() - t0 - seconds["server_eval"]
            privacy = dp_round(dp, server_round)
            if privacy:
                outputs.summary["dp"]["epsilon_per_round"][str(server_round)] = privacy["dp_epsilon"]
            outputs.add_round(strategy.rounds[server_round], loss, new_hash, seconds, **closed_loop, **privacy)
            if wb is not None:
                wb.log_round(outputs.summary["rounds"][-1], seconds)
            entry, rewards = outputs.summary["rounds"][-1], {}
            if verification is not None:  # the round is in summary.json: its outcomes may go to the chain
                verification.commit(server_round, new_hash)
                outputs.console.print(chain_line(entry), soft_wrap=True)
                if entry.get("close_tx_hash"):  # closed on chain: its rewards are final (none asked for in an outage)
                    rewards = round_rewards(verification.registry, verification.run_id, server_round, entry["nodes"])
            notices.add_round(entry, rewards)
        clock["round_start"] = time.perf_counter()
        return MetricRecord({"server_eval_loss": loss})

    train_config = ConfigRecord({
        "local-steps": cfg.local_steps, "batch-size": cfg.batch_size, "learning-rate": cfg.learning_rate,
        "proximal-mu": cfg.proximal_mu, "seed": cfg.seed, "keep-optimizer": cfg.keep_optimizer,
        "drift-correction": cfg.drift_correction,
        **(dp.round_config() if dp is not None else {}), **lora_round_config(bundle.policy, cfg.lora_rank),
    })
    # Replies gated as they arrive, pulled every 0.25 s (Flower's own loop asks every 3 s: a round would wait up to
    # 3 s after its last reply, twice: train and evaluate).
    try:
        strategy.start(grid=ArrivalGrid(grid, strategy.admit, strategy.pull_batch, pull_interval=0.25,
                                        should_stop=lambda: stop_requested(cfg.out_dir)),
                       initial_arrays=initial.pop("arrays"), num_rounds=max(0, cfg.rounds - done),
                       timeout=cfg.timeout, train_config=train_config,
                       evaluate_config=ConfigRecord({"eval-batches": cfg.client_eval_batches,
                                                     "lora-rank": cfg.lora_rank}),
                       evaluate_fn=evaluate_round)
    except RunInterrupted:
        last = outputs.summary["rounds"][-1]["round"] if outputs.summary["rounds"] else 0
        log.warning("stopped by the operator after round %d of %d: --resume continues the run", last, cfg.rounds)
        outputs.summary["interrupted_after"] = last
        outputs.flush()
    else:  # the last round's outcomes: one closing message to each node that took part
        notices.send_closing(grid, min(cfg.timeout, CLOSING_TIMEOUT))
    if verification is not None:
        outputs.summary["chain"].update(verification.finish(cfg.chain_drain_timeout))
        outputs.flush()
    if wb is not None:
        gas_of = None if verification is None else (
            lambda tx: verification.registry.w3.eth.get_transaction_receipt(tx)["gasUsed"])
        wb.finish(outputs.summary, gas_of)
    return outputs.summary


def chain_line(entry: dict) -> str:
    """One line once a committed round's outcomes are sent: the transactions that hold them (the round table
    printed before they were sent), or how many wait in the journal."""
    nodes = entry["nodes"]
    sent = [n["tx_hash"] for n in nodes if n.get("tx_hash")]
    waiting = len(nodes) - len(sent)
    txs = list(dict.fromkeys(sent))
    records = (f"{len(sent)} record(s) in tx {txs[0]}" if len(txs) == 1 else
               f"{len(sent)} records in {len(txs)} transactions (summary.json names each)" if txs else "")
    closed = f"closed in tx {entry['close_tx_hash']}" if entry.get("close_tx_hash") else ""
    pending = [f"{waiting} record(s)"] * bool(waiting) + ["closeRound"] * (not closed)
    wait = f"{' and '.join(pending)} not sent yet: the journal sends them when the chain answers" if pending else ""
    return f"round {entry['round']} on chain: " + "; ".join(p for p in (records, closed, wait) if p)


def dp_round(dp, server_round: int) -> dict:
    """The round's privacy as the aggregator accounts it from the settings it sent: ε each node has spent after
    ``server_round`` rounds (None: clipping without noise, ε = ∞); empty without DP."""
    if dp is None:
        return {}
    epsilon = dp.epsilon(server_round)
    return {"dp_epsilon": epsilon if math.isfinite(epsilon) else None, "dp_delta": dp.delta}


def closed_loop_eval(bundle, cfg: FederationConfig, video_dir: Path) -> dict:
    """Success rate of the global policy in the simulated SO-100 world, on evaluation seeds no dataset uses."""
    if cfg.sim_eval_episodes <= 0:
        return {}
    from node.train import torch_threads
    from sim import eval_seeds, rollout

    with torch_threads(1):  # one observation at a time: a second thread only spins (10x slower on shared cores)
        result = rollout(bundle.policy, bundle.preprocessor, bundle.postprocessor, task=cfg.sim_task,
                         seeds=eval_seeds(cfg.sim_eval_episodes), max_steps=cfg.sim_max_steps or None,
                         video_dir=video_dir, max_videos=2)
    return {"success_rate": result.success_rate, "mean_episode_length": result.mean_length,
            "sim_eval_episodes": len(result.per_seed)}


class RunRefused(RuntimeError):
    """A deployed run stopped for a reason its operator can fix (a bad run value, a chain or verifier that does not
    answer): Flower reports it as the run's failure, in one line (``_OneLineRefusal``)."""


class _OneLineRefusal(logging.Filter):
    """Flower logs a ServerApp's exception with its traceback; a ``RunRefused`` is a message, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], RunRefused):
            record.msg, record.args, record.exc_info = "run stopped: %s", (record.exc_info[1],), None
        return True


def make_server_app(cfg: FederationConfig | None = None, console=None) -> ServerApp:
    """A ServerApp for ``cfg``; without one (deployment), the learning comes from Flower's run config and the
    endpoints, trust settings, paths and verdict rules from the operator's files (``aggregator.operator``). Under
    ``zk0agg start``, a run the operator did not submit is refused there, first: before the aggregator key, the
    chain, the validation set or the nodes are touched (N1, issue 30)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_cfg = cfg
        if run_cfg is None:  # deployment (a ServerApp process of its own): the same quiet log as the CLIs
            from aggregator.operator import RunNotSubmitted, operator_settings, tell_superlink_log

            setup_logging()
            logging.getLogger("flwr").addFilter(_OneLineRefusal())
            try:
                operator = operator_settings(context.run_id)  # first: RunNotSubmitted unless the operator's run
                run_cfg = FederationConfig.from_run_config(dict(context.run_config), operator=operator)
                return run_federation(grid, run_cfg, console=console)
            except (UserError, ChainUnavailable) as err:  # a setting or an endpoint, not a bug: one line
                if isinstance(err, RunNotSubmitted):  # the operator learns of it in the SuperLink's log too
                    tell_superlink_log(str(err))
                raise RunRefused(str(err)) from None
        run_federation(grid, run_cfg, console=console)

    return app


app = make_server_app()
