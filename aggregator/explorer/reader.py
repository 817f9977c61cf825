"""What each explorer page shows, read from the chain (the registry's events and views) at the time of the request.

The run's ``summary.json`` only adds what the chain does not hold: the server's eval loss and closed-loop success
per round, the SRS digest, and the gate's words for a rejection. Values the registry may or may not have (a
record's ``score``, rewards, stakes, governance parameters) are found by feature detection: attributes of the
client's ``Record``, and the contract's ABI (view functions of no argument, of a wallet, or of a round), so the
page works with the registry of today and with a richer one. Where the client has them (``params``, ``stake_of``,
``pending_rewards``, ``reward_balance``), their answers are shown as the chain gives them. A record's reward is
what its round paid it (``Rewards``: the contract's own formula on the round's stored totals) and whether it was
claimed, from the ``RewardClaimed`` and ``Slashed`` events: ``rewardOf`` says only what is still unpaid.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.exceptions import Web3Exception

from aggregator.explorer.config import ExplorerConfig
from aggregator.explorer.view import fmt_value, line_chart_svg, reason_text
from contracts import LOSS_SCALE, ChainError, ChainUnavailable, Reason, Record, Registry, RoundInfo, Status
from contracts.endpoints import redact_url
from contracts.records import ROUND_STATES, earned

log = logging.getLogger(__name__)

CORE_EVENTS = ("RoundOpened", "RoundClosed", "ContributionRecorded")
_SCALAR = re.compile(r"^(address|bool|string|u?int\d*|bytes\d+)$")


class NotFound(LookupError):
    """The registry holds nothing under this name (a round never opened)."""


class NotARegistry(LookupError):
    """The configured address holds no ContributionRegistry on this chain."""


# ----------------------------------------------------------------------------------------------- pure helpers


def scalar_views(abi: list[dict], inputs: str) -> list[str]:
    """Names of the contract's view functions that take ``inputs`` ("" none, "address" a wallet, "uint" a round: one
    unsigned argument named like one) and return one scalar: the values the page can show whatever the contract's
    version. ALL_CAPS constants (status codes, type hashes) are the code's, not the federation's: left out."""
    names = []
    for item in abi:
        if item.get("type") != "function" or item.get("stateMutability") not in ("view", "pure"):
            continue
        types = [i["type"] for i in item.get("inputs", [])]
        round_arg = len(types) == 1 and re.fullmatch(r"uint\d*", types[0]) and "round" in item["inputs"][0]["name"]
        wanted = {"": types == [], "address": types == ["address"], "uint": bool(round_arg)}[inputs]
        outputs = item.get("outputs", [])
        if wanted and len(outputs) == 1 and _SCALAR.match(outputs[0]["type"]) and not item["name"].isupper():
            names.append(item["name"])
    return sorted(names)


ROUND_FIELDS = {f.name for f in dataclasses.fields(RoundInfo)}  # the RoundInfo of this client; a richer one has more


def facts(value: Any, skip: frozenset[str] = frozenset()) -> list[tuple[str, Any]]:
    """(name, value) rows of a client dataclass (e.g. ``Params``, ``StakeInfo``), or of a tuple answer."""
    if dataclasses.is_dataclass(value):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in skip]
    return [] if value is None else [("value", value)]


def optional(registry: Registry, method: str, *args: Any) -> Any:
    """``registry.method(*args)`` where the client and the contract have it; None where either does not."""
    call = getattr(registry, method, None)
    if call is None:
        return None
    try:
        return call(*args)
    except ChainUnavailable:
        raise
    except (ChainError, Web3Exception, ValueError, TypeError, OverflowError) as err:
        log.debug("%s not readable here: %s", method, err)
        return None


@dataclass(frozen=True)
class RunMetrics:
    """What a run's summary.json adds to the chain's record (nothing when it is another registry's run)."""

    by_round: dict[int, dict] = field(default_factory=dict)
    initial_eval_loss: float | None = None
    chain: dict = field(default_factory=dict)
    note: str = ""  # why nothing or only part is shown
    run_id: str | None = None  # the run on the registry the metrics are of

    def nodes(self, round_: int) -> dict[str, dict]:
        """The round's node entries by on-chain address (lower case)."""
        return {(n.get("address") or "").lower(): n for n in self.by_round.get(round_, {}).get("nodes", [])}


def run_metrics(summary: dict | None, registry: str, source: str = "summary.json") -> RunMetrics:
    """The per-round metrics of a run's summary, if that run recorded into ``registry``."""
    if summary is None:
        return RunMetrics()
    chain = summary.get("chain") or {}
    recorded_in = (chain.get("registry") or "").lower()
    if recorded_in != registry.lower():
        where = f"registry {chain['registry']}" if recorded_in else "no registry (an unverified run)"
        return RunMetrics(note=f"{source} is a run recorded in {where}, not this one: its metrics are not shown")
    rounds = {int(r["round"]): r for r in summary.get("rounds", []) if "round" in r}
    return RunMetrics(rounds, summary.get("initial_eval_loss"), chain, run_id=chain.get("run_id"))


def same_models(entry: dict, info: RoundInfo) -> bool:
    """Whether a summary round is this chain's round: the same global model in, and once closed, the same out."""
    def same(a: str | None, b: str) -> bool:
        return (a or "").lower() == b.lower()

    return same(entry.get("global_hash"), info.global_hash) and (
        info.state != "closed" or same(entry.get("new_global_hash"), info.new_global_hash))


def load_summary(outputs: str) -> tuple[dict | None, str]:
    """summary.json of an outputs folder, and a note when it cannot be read (the run may not have started)."""
    if not outputs:
        return None, ""
    path = Path(outputs) / "summary.json"
    try:
        return json.loads(path.read_text()), ""
    except FileNotFoundError:
        return None, f"no {path} yet: eval loss and success rate appear once the run's first round is written"
    except (OSError, ValueError) as err:
        return None, f"cannot read {path}: {err}"


# ----------------------------------------------------------------------------------------------- page data


@dataclass(frozen=True)
class Reward:
    """What one record earned, and what became of it."""

    amount: int | None  # reward token units (None: its round is still open, the share is not known yet)
    state: str  # "claimed", "unclaimed", "forfeited (slashed)" or "round open"


class Rewards:
    """Each record's reward as the contract computes it (``_earned``: emission × score / the round's score total,
    for a SELECTED record with a positive score in a closed round) and whether it was claimed (``RewardClaimed``)
    or forfeited (``Slashed``). Read from the events and one ``roundInfo`` per round, not from ``rewardOf`` (which is
    0 once paid): a claimed round still shows what it paid."""

    def __init__(self, registry: Registry, events: list[dict]) -> None:
        self.registry = registry
        self._rounds: dict[tuple[str, int], tuple] = {}
        self.claimed: set[tuple[str, str, int]] = set()  # (node, run, round), lower case
        self.slashed: set[tuple[str, str, int]] = set()
        for e in events:
            if e["event"] == "RewardClaimed":
                node = e["args"]["node"].lower()
                for run, rnd in zip(e["args"]["runIds"], e["args"]["rounds"], strict=True):
                    self.claimed.add((node, fmt_value(run).lower(), rnd))
            elif e["event"] == "Slashed":
                self.slashed.add((e["args"]["node"].lower(), fmt_value(e["args"]["runId"]).lower(), e["args"]["round"]))

    def round_totals(self, run_id: str, rnd: int) -> tuple[str, int, int]:
        """(state, emission, weight total at the contract's fixed point) of a round, exactly as stored."""
        key = (run_id.lower(), rnd)
        if key not in self._rounds:
            raw = self.registry.contract.functions.roundInfo(Web3.to_bytes(hexstr=run_id), rnd).call()
            self._rounds[key] = (ROUND_STATES.get(raw[0], "none"), int(raw[7]), int(raw[8]))  # Round: emission, total
        return self._rounds[key]

    def of(self, record: Record) -> Reward | None:
        """The record's reward; None where it earns nothing (not SELECTED, or no weight in the round's average)."""
        weight = int(record.chain[13]) if record.chain else round(record.weight * LOSS_SCALE)
        if record.status != Status.SELECTED or weight <= 0:
            return None
        state, emission, total = self.round_totals(record.run_id, record.round)
        if state != "closed":
            return Reward(None, "round open")
        key = (record.node.lower(), record.run_id.lower(), record.round)
        return Reward(earned(emission, weight, total),
                      "claimed" if key in self.claimed else "forfeited (slashed)" if key in self.slashed
                      else "unclaimed")


@dataclass
class Reply:
    """One record of a round, as a row of the round page (and of a wallet's history)."""

    record: Record
    tx_hash: str | None
    block: int | None
    score: float | None
    reward: Reward | None
    reason_text: str
    detail: str = ""  # the gate's words, from summary.json when given
    claimed: str | None = None  # the wallet an unattributable reply claimed (summary.json)

    @property
    def status(self) -> str:
        return self.record.status.name


def _reply(record: Record, txs: dict, metrics: RunMetrics, rewards: Rewards | None) -> Reply:
    tx = txs.get((record.run_id, record.round, record.node.lower()), {})
    entry = metrics.nodes(record.round).get(record.node.lower(), {}) if metrics.run_id in (None, record.run_id) else {}
    claimed = entry.get("claimed_address")
    reward = rewards.of(record) if rewards is not None else None
    scored = record.status != Status.REJECTED or record.reason in (Reason.HARMFUL, Reason.DUPLICATE)  # others: unscored
    return Reply(record, tx.get("tx_hash"), tx.get("block"), getattr(record, "score", None) if scored else None, reward,
                 reason_text(record.reason), entry.get("detail") or "",
                 claimed if claimed and claimed.lower() != record.node.lower() else None)


def wallet_rows(registry: Registry, events: list[dict], run_id: str | None, rewards: Rewards | None) -> list[dict]:
    """The federation's wallets (approved, staked, or signing a record of the run shown), in the order the chain
    first met them: approval and stake now; in the run shown, signed records by status, mean score (over the
    records that were scored: a reply rejected before the validation set records 0), rewards (pending, claimed,
    in rounds still open) and slashes. Replies recorded under their own key (unattributable rejections) are not
    wallets: the round pages show them."""
    rows: dict[str, dict] = {}

    def row(address: str) -> dict:
        return rows.setdefault(address.lower(), {
            "address": Web3.to_checksum_address(address), "since_block": None, "last": None, "statuses": Counter(),
            "scores": [], "pending": 0, "claimed": 0, "unsettled_rounds": 0, "slashes": 0, "slashed": 0})

    for e in events:
        name, args = e["event"], e["args"]
        if name in ("NodeApproved", "NodeRevoked"):
            w = row(args["node"])
            w["since_block"] = w["since_block"] if w["since_block"] is not None else e["block"]
            w["last"] = "approved" if name == "NodeApproved" else "revoked"
            w["last_block"], w["last_tx"] = e["block"], e["tx_hash"]
        elif name == "Staked":
            row(args["node"])
        elif name == "ContributionRecorded" and args["runId"] == run_id and args["signed"]:
            record = registry.record_of_event(e)
            w = row(record.node)
            w["statuses"][record.status.name] += 1
            if record.status != Status.REJECTED or record.reason in (Reason.HARMFUL, Reason.DUPLICATE):  # scored
                w["scores"].append(record.score)
            reward = rewards.of(record) if rewards is not None else None
            if reward is not None and reward.amount is None:
                w["unsettled_rounds"] += 1
            elif reward is not None and reward.state == "claimed":
                w["claimed"] += reward.amount
            elif reward is not None and reward.state == "unclaimed":
                w["pending"] += reward.amount
        elif name == "Slashed" and fmt_value(args["runId"]).lower() == (run_id or "").lower():
            w = row(args["node"])
            w["slashes"] += 1
            w["slashed"] += args["amount"]
    for w in rows.values():
        w["approved"] = registry.is_approved(w["address"])
        stake = optional(registry, "stake_of", w["address"])
        w["stake"], w["exiting"] = (stake.amount, stake.exiting) if stake is not None else (None, False)
        w["records"] = sum(w["statuses"].values())
        w["mean_score"] = sum(w["scores"]) / len(w["scores"]) if w["scores"] else None
    return list(rows.values())


class ChainReader:
    """Reads one registry for the pages; every method is one page's data, read fresh from the chain."""

    def __init__(self, config: ExplorerConfig) -> None:
        self.config = config
        self.w3 = Web3(Web3.HTTPProvider(config.rpc_url, request_kwargs={"timeout": config.timeout}))

    # ------------------------------------------------------------------ access
    def registry(self) -> Registry:
        """The registry, checked: ChainUnavailable if the chain does not answer, NotARegistry if the address is
        empty or holds another contract."""
        address = self.config.registry
        if not self.w3.is_connected():
            raise ChainUnavailable(f"no Ethereum node answers at {redact_url(self.config.rpc_url)}")
        try:
            registry = Registry.at(self.w3, address)
        except ChainUnavailable:
            raise
        except ChainError:
            if self.w3.eth.get_code(self.w3.to_checksum_address(address)):  # code, but not the registry's
                raise NotARegistry(f"the contract at {address} on chain {self.w3.eth.chain_id} does not answer as a "
                                   "zk0 ContributionRegistry: a wrong --registry address?") from None
            raise NotARegistry(f"there is no contract at {address} on chain {self.w3.eth.chain_id} "
                               "(a wrong --registry address, or a chain restarted without its state)") from None
        try:
            registry.aggregator()
            registry.contract.functions.LOSS_SCALE().call()
        except ChainUnavailable:
            raise
        except (ChainError, Web3Exception, ValueError, OverflowError):
            raise NotARegistry(f"the contract at {address} on chain {self.w3.eth.chain_id} does not answer as a "
                               "zk0 ContributionRegistry: a wrong --registry address?") from None
        return registry

    def run(self, registry: Registry, wanted: str | None = None) -> tuple[str | None, list[dict]]:
        """The run a page shows (``wanted``: a run id or a prefix of one; default: the run of the outputs' summary,
        else the registry's latest run) and every run the registry knows."""
        runs = registry.runs()
        ids = [r["run_id"] for r in runs]
        if wanted:
            matching = [r for r in ids if r.startswith(wanted.lower())]
            if len(matching) != 1:
                raise NotFound(f"{'no' if not matching else 'more than one'} run of registry {registry.address} "
                               f"starts with {wanted}")
            return matching[0], runs
        summary, _ = load_summary(self.config.outputs)
        mine = ((summary or {}).get("chain") or {}).get("run_id")
        if mine in ids:
            return mine, runs
        return (ids[-1] if ids else None), runs

    def metrics(self, registry: Registry, run_id: str | None = None) -> RunMetrics:
        """The run's metrics for the rounds whose global hash on chain is the summary's, when the summary is of
        ``run_id``: anvil deploys at the same address on every fresh chain, so the registry address alone does not
        tell two runs apart."""
        summary, note = load_summary(self.config.outputs)
        metrics = run_metrics(summary, self.config.registry)
        if run_id is None or (metrics.run_id is not None and metrics.run_id != run_id):
            return RunMetrics(note=note or (f"summary.json is of run {metrics.run_id}: its metrics are not shown here"
                                            if metrics.run_id else metrics.note), run_id=metrics.run_id)
        infos = {rnd: registry.round_info(run_id, rnd) for rnd in metrics.by_round}
        kept = {rnd: m for rnd, m in metrics.by_round.items() if same_models(m, infos[rnd])}
        other = sorted(rnd for rnd in set(metrics.by_round) - set(kept) if infos[rnd].state != "none")
        if other:
            note = (f"summary.json's round(s) {', '.join(map(str, other))} have other global models than the chain's: "
                    "another run (a registry at the same address on another chain?); their metrics are not shown")
        return RunMetrics(kept, metrics.initial_eval_loss if kept else None, metrics.chain if kept else {},
                          metrics.note or note, run_id=run_id)

    def _views(self, registry: Registry, inputs: str, *args: Any) -> list[tuple[str, Any]]:
        """(name, value) of every scalar view taking ``inputs``; a call that fails shows its error, not a 500."""
        out = []
        for name in scalar_views(registry.contract.abi, inputs):
            try:
                out.append((name, registry.contract.functions[name](*args).call()))
            except (Web3Exception, ValueError, OverflowError) as err:
                out.append((name, f"(cannot read: {type(err).__name__})"))
        return out

    @staticmethod
    def _tx_index(events: list[dict]) -> dict:
        """Transactions of the records, by (run, round, node), and of the rounds, by (run, round, event name)."""
        txs: dict = {}
        for e in events:
            if e["event"] == "ContributionRecorded":
                txs[(e["args"]["runId"], e["args"]["round"], e["args"]["node"].lower())] = e
            elif e["event"] in ("RoundOpened", "RoundClosed"):
                txs[(e["args"]["runId"], e["args"]["round"], e["event"])] = e
        return txs

    # ------------------------------------------------------------------ pages
    def header(self, registry: Registry) -> dict:
        return {"chain_id": registry.chain_id, "block": self.w3.eth.block_number, "registry": registry.address,
                "rpc_url": redact_url(self.config.rpc_url)}

    def rewards(self, registry: Registry, events: list[dict]) -> Rewards | None:
        """Each record's reward, where the registry pays rewards (its ABI has ``rewardOf``)."""
        return Rewards(registry, events) if any(i.get("name") == "rewardOf" for i in registry.contract.abi) else None

    def federation(self, run: str | None = None) -> dict:
        registry = self.registry()
        events = registry.events()
        run_id, runs = self.run(registry, run)
        metrics = self.metrics(registry, run_id)
        rewards = self.rewards(registry, events)
        wallets = wallet_rows(registry, events, run_id, rewards)
        circuits = list(dict.fromkeys(e["args"]["circuitId"] for e in events if e["event"] == "RoundOpened"))
        mine = [e for e in events if e["args"].get("runId") == run_id]
        rounds = sorted({e["args"]["round"] for e in mine if e["event"] == "RoundOpened"})
        records = [e for e in mine if e["event"] == "ContributionRecorded"]
        for r in runs:
            r["rounds"] = sum(1 for e in events if e["event"] == "RoundOpened" and e["args"]["runId"] == r["run_id"])
        return {**self.header(registry), "title": "Federation", "metrics": metrics, "run": run_id, "runs": runs,
                "parameters": self._views(registry, "") + facts(optional(registry, "params")),
                "wallets": wallets, "has_reward": rewards is not None,
                "has_stake": any(w["stake"] is not None for w in wallets), "circuits": circuits,
                "srs_sha256": metrics.chain.get("srs_sha256"), "srs_kind": metrics.chain.get("srs"),
                "outputs_circuit": metrics.chain.get("circuit_id"), "rounds": rounds,
                "n_records": len(records), "statuses": Counter(Status(e["args"]["status"]).name for e in records),
                "event_counts": Counter(e["event"] for e in events)}

    def rounds(self, run: str | None = None) -> dict:
        registry = self.registry()
        events = registry.events()
        run_id, runs = self.run(registry, run)
        metrics = self.metrics(registry, run_id)
        txs = self._tx_index(events)
        rows = []
        for rnd in sorted({e["args"]["round"] for e in events
                           if e["event"] == "RoundOpened" and e["args"]["runId"] == run_id}):
            info = registry.round_info(run_id, rnd)
            records = [registry.record_of_event(e) for e in events if e["event"] == "ContributionRecorded"
                       and (e["args"]["runId"], e["args"]["round"]) == (run_id, rnd)]
            m = metrics.by_round.get(rnd, {})
            rows.append({"info": info, "records": len(records), "statuses": Counter(r.status.name for r in records),
                         "eval_loss": m.get("server_eval_loss"), "success_rate": m.get("success_rate"),
                         "opened_tx": txs.get((run_id, rnd, "RoundOpened"), {}).get("tx_hash"),
                         "closed_tx": txs.get((run_id, rnd, "RoundClosed"), {}).get("tx_hash")})
        losses = ([(0, metrics.initial_eval_loss)] if metrics.initial_eval_loss is not None else []) + [
            (r["info"].round, r["eval_loss"]) for r in rows if r["eval_loss"] is not None]
        success = [(r["info"].round, r["success_rate"]) for r in rows if r["success_rate"] is not None]
        charts = [line_chart_svg(losses, "server eval loss (held-out)", "loss"),
                  line_chart_svg(success, "closed-loop success rate", "success", percent=True, y_range=(0.0, 1.0))]
        return {**self.header(registry), "title": "Rounds", "rows": rows, "metrics": metrics, "run": run_id,
                "runs": runs, "charts": charts if self.config.outputs else []}

    def round(self, rnd: int, run: str | None = None) -> dict:
        registry = self.registry()
        run_id, runs = self.run(registry, run)
        if run_id is None:
            raise NotFound(f"registry {registry.address} has no run yet")
        info = registry.round_info(run_id, rnd)
        events = registry.events()
        records = [registry.record_of_event(e) for e in events if e["event"] == "ContributionRecorded"
                   and (e["args"]["runId"], e["args"]["round"]) == (run_id, rnd)]
        if info.state == "none" and not records:
            raise NotFound(f"round {rnd} of run {run_id} was never opened in registry {registry.address}")
        metrics = self.metrics(registry, run_id)
        txs = self._tx_index(events)
        rewards = self.rewards(registry, events)
        replies = [_reply(r, txs, metrics, rewards) for r in records]
        paid = [r.reward for r in replies if r.reward is not None and r.reward.amount is not None]
        others = [e for e in events if e["event"] not in CORE_EVENTS and e["args"].get("round") == rnd
                  and e["args"].get("runId", run_id) == run_id]
        known = sorted({e["args"]["round"] for e in events
                        if e["event"] == "RoundOpened" and e["args"]["runId"] == run_id})
        m = metrics.by_round.get(rnd, {})
        return {**self.header(registry), "title": f"Round {rnd}", "info": info, "replies": replies,
                "metrics": metrics, "eval_loss": m.get("server_eval_loss"), "success_rate": m.get("success_rate"),
                "run": run_id, "runs": runs,
                "note": m.get("note"), "opened_tx": txs.get((run_id, rnd, "RoundOpened"), {}).get("tx_hash"),
                "closed_tx": txs.get((run_id, rnd, "RoundClosed"), {}).get("tx_hash"), "other_events": others,
                "views": facts(info, frozenset(ROUND_FIELDS)),
                "emission": getattr(info, "emission", None) if rewards is not None else None,
                "paid": sum(r.amount for r in paid),
                "claimed_total": sum(r.amount for r in paid if r.state == "claimed"),
                "weight_total": getattr(info, "weight_total", None),
                "prev": max((r for r in known if r < rnd), default=None),
                "next": min((r for r in known if r > rnd), default=None),
                "has_score": any(r.score is not None for r in replies),
                "has_reward": rewards is not None}

    def wallet(self, address: str, run: str | None = None) -> dict:
        registry = self.registry()
        history = registry.node_history(address)  # every run's
        events = registry.events()
        run_id, runs = self.run(registry, run)
        metrics = self.metrics(registry, run_id)
        txs = self._tx_index(events)
        rewards = self.rewards(registry, events)
        replies = [_reply(r, txs, metrics, rewards) for r in history]
        mentions = [e for e in events if e["event"] != "ContributionRecorded"
                    and any(isinstance(v, str) and v.lower() == address.lower() for v in e["args"].values())]
        statuses = Counter(r.status for r in replies)
        scores = [r.score for r in replies if r.score is not None]
        pending = optional(registry, "pending_rewards", address)
        chain_facts = [(f"stake {name}", v) for name, v in facts(optional(registry, "stake_of", address))]
        chain_facts += [("unpaid rewards", pending[0]),
                        ("unpaid in rounds", ", ".join(f"{r.round} (run {r.run_id[:10]}…)" for r in pending[1]) or "-")
                        ] if isinstance(pending, tuple) else []
        balance = optional(registry, "reward_balance", address)
        chain_facts += [("reward tokens held", balance)] if balance is not None else []
        drops = [r.record.loss_before - r.record.loss_after for r in replies if r.record.signed]
        earned = [r.reward for r in replies if r.reward is not None and r.reward.amount is not None]
        totals = {"rounds": len({(r.record.run_id, r.record.round) for r in replies}), "selected": statuses["SELECTED"],
                  "earned": sum(r.amount for r in earned) if rewards is not None else None,
                  "claimed": sum(r.amount for r in earned if r.state == "claimed"),
                  "not_selected": statuses["NOT_SELECTED"], "rejected": statuses["REJECTED"],
                  "score": sum(scores) if scores else None,
                  "loss_drop": sum(drops) / len(drops) if drops else None}
        claimed = [{"round": rnd, **n} for rnd, entry in sorted(metrics.by_round.items())
                   for n in entry.get("nodes", []) if (n.get("claimed_address") or "").lower() == address.lower()
                   and (n.get("address") or "").lower() != address.lower()]
        return {**self.header(registry), "title": f"Wallet {address}", "address": address, "claimed": claimed,
                "run": run_id, "runs": runs,
                "approved": registry.is_approved(address), "replies": replies, "totals": totals,
                "views": chain_facts + [(n, v) for n, v in self._views(registry, "address", address)
                                        if n != "isApproved"],
                "events": mentions, "metrics": metrics,
                "has_score": bool(scores), "has_reward": rewards is not None}
