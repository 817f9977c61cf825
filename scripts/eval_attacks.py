"""Run every attack of ``attacks`` in a verified federation, next to an honest-only run, and tabulate.

Each run is one full verified federation (anvil, EZKL proofs, signatures, the gate, Krum, chain records) on
synthetic SO-100 data: honest nodes first, then the attackers. The honest-only run with the same honest nodes, seed
and Krum settings is the reference for the final server eval loss. Attacks the gate must stop run together in one
federation (the "gate suite": a rejected reply never reaches Krum, so they cannot help each other), each attack
that can pass the gate runs on its own, with one attacker (within Krum's ``n > 2f + 2`` bound) and with f + 1
(beyond it); colluders need a larger federation. Everything is reported as it comes out.

Results accumulate in ``<workdir>/results.json`` (one entry per run, re-run with ``--force``), so subsets can be
run one after another (``--attacks alie,ipm``); the table is rebuilt from every stored run each time and written
to ``--out``: between the ``<!-- attack-table -->`` markers of an existing file (docs/security.md), or as a new
file. Fixtures, circuits and the SRS are built once in ``--cache-dir`` and reused by every run.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_attacks.py --attacks honest,sign-flip --out docs/security.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from scripts.doc_section import write_section  # noqa: E402
from scripts.evalkit import add_options, md_row  # noqa: E402

log = logging.getLogger("eval_attacks")

START, END = "<!-- attack-table:start -->", "<!-- attack-table:end -->"
# The runs with the validation gate (--plan validation) have a table of their own.
VAL_START, VAL_END = "<!-- attack-table-validation:start -->", "<!-- attack-table-validation:end -->"
SEL_START, SEL_END = "<!-- attack-table-selection:start -->", "<!-- attack-table-selection:end -->"
# Attacks the gate must stop: run together in one federation (a rejected reply never reaches Krum, so they do not
# interact), next to as many honest nodes as the honest-only reference.
GATE_ATTACKS = ("forge-proof", "proof-swap", "replay", "bad-signature", "malformed", "unapproved", "free-rider",
                "crash")
# Attacks with a valid proof and signature: only Krum (and the server evaluation) stands between them and the model.
KRUM_ATTACKS = ("sign-flip", "scale", "noise", "alie", "ipm", "poison-negate", "poison-shuffle", "free-rider-noise",
                "collude", "fabricate-witness", "fabricate-free-rider")
# Beyond Krum's bound, the attacks that got through it before the validation gate (docs/security.md).
BEYOND_ATTACKS = ("collude", "ipm", "free-rider-noise", "poison-shuffle")
FABRICATE_ATTACKS = ("fabricate-witness", "fabricate-free-rider")
LOSS_TOLERANCE = 0.10  # "within 10 % of the honest-only run"
ATTACKS_FROM = {"replay": 2, "crash": 2}  # rounds before these, the node behaves honestly (nothing to replay yet)
VERIFIED = ("SELECTED", "NOT_SELECTED", "NO_QUORUM")


@dataclass(frozen=True)
class Run:
    """One verified federation: ``honest`` honest nodes, then one node per entry of ``attacks``; Krum assumes
    ``krum_f``. Its reference is the honest-only run of ``ref_nodes`` nodes with the same Krum settings."""

    name: str  # "honest", the attack, or "gate-suite"
    honest: int
    attacks: tuple[str, ...]
    krum_f: int
    ref_nodes: int
    validation: bool = True  # the aggregator scores updates on its validation set (False: the gate before it)
    selection: str = "usefulness"  # FederationConfig.selection: by usefulness, or Multi-Krum's (the rule before)

    @property
    def nodes(self) -> int:
        return self.honest + len(self.attacks)

    @property
    def key(self) -> str:
        return (f"{self.name}-{len(self.attacks)}of{self.nodes}-f{self.krum_f}" + ("" if self.validation else "-noval")
                + ("" if self.selection == "usefulness" else f"-{self.selection}"))

    @property
    def krum_facing(self) -> int:
        """Attackers whose replies can pass the gate and reach Krum."""
        return sum(a not in GATE_ATTACKS for a in self.attacks)

    @property
    def within_bound(self) -> bool:
        """Krum's guarantee holds: no more attackers reach it than the f it assumes, and n > 2f + 2."""
        return self.krum_facing <= self.krum_f and self.honest + self.krum_facing > 2 * self.krum_f + 2

    @staticmethod
    def honest_only(nodes: int, krum_f: int, validation: bool = True, selection: str = "usefulness") -> Run:
        return Run("honest", nodes, (), krum_f, nodes, validation, selection)

    def reference(self) -> Run:
        return Run.honest_only(self.ref_nodes, self.krum_f, self.validation, self.selection)

    def alone(self) -> Run:
        """This run's honest nodes on their own: separates the attack's effect from having fewer honest nodes.
        Too few of them for Krum's f (n > 2f + 2 fails): Krum with f = 0, nothing to be robust against."""
        f = self.krum_f if self.honest > 2 * self.krum_f + 2 else 0
        return Run.honest_only(self.honest, f, self.validation, self.selection)


def default_runs(nodes: int, krum_f: int) -> list[Run]:
    """In the order they are worth the machine's time, all with ``nodes`` nodes and Krum assuming ``krum_f``: the
    honest-only reference; the gate suite (``nodes`` honest nodes plus one of each gate-facing attack); each attack
    that can pass the gate with one attacker (within the bound); colluders and every such attack with f + 1
    attackers (beyond it); colluders within the bound of a Krum that expects f + 1; then f + 2 attackers."""
    runs = [Run.honest_only(nodes, krum_f), Run("gate-suite", nodes, GATE_ATTACKS, krum_f, nodes)]
    singles = [a for a in KRUM_ATTACKS if a != "collude"]
    runs += [Run(a, nodes - 1, (a,), krum_f, nodes) for a in singles]
    beyond = [[Run(name, nodes - a, (name,) * a, krum_f, nodes) for name in ("collude", *singles)]
              for a in (krum_f + 1, krum_f + 2)]
    f2 = krum_f + 1
    big = 2 * f2 + 4  # f + 1 colluders within the bound, with one reply to spare
    # Last: the honest nodes of the one- and two-attacker runs on their own, to tell an attack's effect from that
    # of having fewer honest nodes (Krum then averages another honest subset).
    alone = [Run.honest_only(nodes - a, krum_f) for a in (1, 2) if nodes - a > 2 * krum_f + 2]
    return [*runs, *beyond[0], Run.honest_only(big, f2), Run("collude", big - f2, ("collude",) * f2, f2, big),
            *beyond[1], *alone]


def validation_runs(nodes: int, krum_f: int) -> list[Run]:
    """With the validation gate: the honest-only reference; each fabricated-witness attack alone, before (no
    validation set) and after; the attacks that got through Krum beyond its bound, with f + 1 and f + 2 attackers;
    then the honest nodes of those runs on their own."""
    runs = [Run.honest_only(nodes, krum_f)]
    for name in FABRICATE_ATTACKS:
        runs += [Run(name, nodes - 1, (name,), krum_f, nodes, validation=False), Run(name, nodes - 1, (name,), krum_f,
                                                                                     nodes)]
    runs += [Run(name, nodes - a, (name,) * a, krum_f, nodes) for a in (krum_f + 1, krum_f + 2)
             for name in BEYOND_ATTACKS]
    return [*runs, Run.honest_only(nodes, krum_f, validation=False), *dict.fromkeys(r.alone() for r in runs[1:])]


def selection_runs(nodes: int, krum_f: int) -> list[Run]:
    """Who is averaged and paid (docs/security.md, "Selection"): colluders (f + 2 of ``nodes``, beyond Krum's
    bound), two copies of node 0's reply from other wallets, three near-copies; by usefulness, and the colluders by
    Multi-Krum too (the rule before); then the honest nodes of each on their own."""
    colluders = krum_f + 2
    runs = [Run.honest_only(nodes, krum_f), Run("collude", nodes - colluders, ("collude",) * colluders, krum_f, nodes),
            Run("sybil-copy", nodes - 2, ("sybil-copy",) * 2, krum_f, nodes),
            Run("sybil-near-copy", nodes - 3, ("sybil-near-copy",) * 3, krum_f, nodes)]
    runs.append(replace(runs[1], selection="multikrum"))
    return [*runs, *dict.fromkeys(r.alone() for r in runs[1:])]


def run_one(run: Run, args) -> dict:
    """One verified federation run; returns what the table needs, per reply: round, attack, status, detail."""
    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo

    out = Path(args.workdir) / run.key
    if out.exists():
        import shutil

        shutil.rmtree(out)  # a fresh chain and wallets: runs must not share state
    demo = DemoConfig(nodes=run.nodes, rounds=args.rounds, out=str(out), cache_dir=args.cache_dir,
                      episodes=args.episodes, frames=args.frames, data="synthetic", adversaries=run.attacks,
                      validation=run.validation)
    fed = FederationConfig(local_steps=args.local_steps, batch_size=args.batch_size, learning_rate=args.lr,
                           eval_batches=args.eval_batches, fraction_evaluate=0.0, slice_rows=args.slice_rows,
                           krum_f=run.krum_f, krum_m=args.krum_m, min_gain=args.min_gain, selection=run.selection)
    t0 = time.perf_counter()
    summary = run_demo(demo, fed)
    return collect(run, out, summary, time.perf_counter() - t0, args)


def collect(run: Run, out: Path, summary: dict, seconds: float, args) -> dict:
    """A finished run's summary → its stored result."""
    from contracts import read_address

    roles = ["honest"] * run.honest + list(run.attacks)
    wallets = {read_address(out / "wallets" / f"node{i}.json"): role for i, role in enumerate(roles)}
    replies, kept = [], 0
    for entry in summary["rounds"]:
        kept += bool(entry["kept_global"])
        for node in entry["nodes"]:
            status = node["reason"] if node["status"] == "NOT_SELECTED" and node["reason"] else node["status"]
            useful = node.get("score") is not None and entry.get("validation_loss") is not None and (
                node["score"] > args.min_gain * entry["validation_loss"])
            replies.append({"round": entry["round"], "role": role_of(node, wallets, run), "status": status,
                            "detail": node["detail"], "on_chain": bool(node.get("tx_hash")),
                            "score": node.get("score"), "useful": useful, "weight": node.get("weight", 0.0),
                            "wallet": node["claimed_address"]})
    rewards = {w: summary.get("incentives", {}).get(w, {}).get("rewards_pending", 0) for w in wallets}
    return {"run": asdict(run), "seconds": round(seconds, 1), "initial_eval_loss": summary["initial_eval_loss"],
            "final_eval_loss": summary["final_eval_loss"],
            "eval_loss": [r["server_eval_loss"] for r in summary["rounds"]], "replies": replies,
            "kept_global_rounds": kept, "pending": summary["chain"].get("pending_operations"),
            "closest_pair": [entry.get("closest_pair") for entry in summary["rounds"]],
            "rewards": [{"wallet": w, "role": role, "node": i, "tokens": rewards[w] / 10**18}
                        for i, (w, role) in enumerate(wallets.items())],
            "settings": settings(args)}


def role_of(node: dict, wallets: dict, run: Run) -> str:
    """Who sent a reply: by the wallet it claims, or, for replies that claim none, by what went wrong."""
    if node["claimed_address"] in wallets:
        return wallets[node["claimed_address"]]
    if "died mid-round" in (node["detail"] or "") and "crash" in run.attacks:
        return "crash"
    return "malformed" if "malformed" in run.attacks else "unattributed"


def settings(args) -> dict:
    keys = ("rounds", "local_steps", "batch_size", "lr", "episodes", "frames", "slice_rows", "eval_batches", "krum_m",
            "min_gain")
    return {**{k: getattr(args, k) for k in keys}, "commit": code_version()}


def code_version() -> str:
    """The commit the code under test is at (with "+changes" when its tracked files differ from it)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
                           capture_output=True, text=True)  # the table's own doc changing is not a code change
    return (commit or "unknown") + ("+changes" if dirty.stdout.strip() else "")


# ----------------------------------------------------------------------------------------------------- the table
def outcome(replies: list[dict]) -> tuple[str, str, int]:
    """(the gate's reasons, how often Krum selected, times selected) for one role's replies."""
    statuses = Counter(r["status"] for r in replies)
    gate = ", ".join(f"{s} ×{c}" for s, c in sorted(statuses.items()) if s not in VERIFIED)
    verified = sum(statuses[s] for s in VERIFIED)
    krum = f"{statuses['SELECTED']}/{verified}" if verified else "-"
    if statuses["NO_QUORUM"]:
        krum += f" ({statuses['NO_QUORUM']} without quorum)"
    return gate or "passed", krum, statuses["SELECTED"]


def caught_by(replies: list[dict], run: Run) -> str:
    """What kept one role's replies out of the model: gate reasons, the validation score (verified but not useful,
    so never averaged in), Krum (useful but ranked out), or nothing (selected)."""
    statuses = Counter(r["status"] for r in replies)
    parts = [f"{s} ×{c}" for s, c in sorted(statuses.items()) if s not in VERIFIED]
    unused = [r for r in replies if r["status"] in ("NOT_SELECTED", "NO_QUORUM")]
    if run.validation and (low := sum(not r.get("useful") for r in unused)):
        parts.append(f"score ≤ min gain ×{low}")
    if krum := sum(bool(r.get("useful")) or not run.validation for r in unused):
        parts.append(f"Krum ×{krum}")
    if statuses["SELECTED"]:
        parts.append(f"**nothing ×{statuses['SELECTED']}**")
    return ", ".join(parts) or "-"


def loss_delta(res: dict, ref: dict | None) -> float | None:
    if ref is None:
        return None
    return (res["final_eval_loss"] - ref["final_eval_loss"]) / ref["final_eval_loss"]


def percent(delta: float | None) -> str:
    return "-" if delta is None else "0.0%" if abs(delta) < 5e-4 else f"{delta:+.1%}"


def table(results: dict, plan: str = "default") -> str:
    """The markdown table: one line per attack of every stored run, references first."""
    if plan == "validation":
        return validation_table(results)
    if plan == "selection":
        return selection_table(results)
    lines = ["| attack | attackers / nodes | Krum f | Krum bound | gate (reason × replies) | selected by Krum | "
             "final eval loss | vs honest-only | vs its honest nodes alone | records on chain | verdict | run s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {key: i for i, key in enumerate(r.key for r in default_runs(7, 1))}
    for res in sorted(results.values(), key=lambda r: (Run(**_run_args(r)).within_bound is False,
                                                       order.get(Run(**_run_args(r)).key, 99))):
        run = Run(**_run_args(res))
        ref = results.get(run.reference().key)
        delta = loss_delta(res, ref)
        chain = f"{sum(r['on_chain'] for r in res['replies'])}/{len(res['replies'])}"
        chain += f" ({res['pending']} pending)" if res["pending"] else ""
        bound = "within" if run.within_bound else "**beyond**"
        vs = "-" if run.name == "honest" else percent(delta)
        alone = results.get(run.alone().key)
        alone_delta = None if run.name in ("honest", "gate-suite") else loss_delta(res, alone)
        vs_alone = percent(alone_delta)
        for role in dict.fromkeys(run.attacks) or ("honest",):
            replies = [r for r in res["replies"] if r["role"] == role and r["round"] >= ATTACKS_FROM.get(role, 1)]
            gate, krum, selected = outcome(replies)
            count = run.attacks.count(role) if run.attacks else 0
            who = f"{count} / {run.nodes}" + (f" (with {len(run.attacks) - count} others)" if run.name ==
                                              "gate-suite" else "")
            if role in ATTACKS_FROM:
                who += f", from round {ATTACKS_FROM[role]}"
            lines.append(md_row(role if run.name != "honest" else "none (honest-only)", who, run.krum_f, bound,
                                gate if run.attacks else "-", krum if run.attacks else "-",
                                f"{res['final_eval_loss']:.4f}", vs, vs_alone, chain,
                                verdict(run, selected, delta if alone_delta is None else alone_delta, res),
                                f"{res['seconds']:.0f}"))
    return "\n".join(lines)


def validation_table(results: dict) -> str:
    """The runs of ``--plan validation``: each attack with what caught it and its loss vs its honest nodes alone."""
    lines = ["| attack | attackers / nodes | Krum f | Krum bound | validation set | caught by | selected | "
             "final eval loss | vs its honest nodes alone | vs honest-only | records on chain | verdict | run s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res, run in in_plan_order(results, validation_runs(7, 1)):
        ref, alone = results.get(run.reference().key), results.get(run.alone().key)
        delta, alone_delta = loss_delta(res, ref), loss_delta(res, alone)
        chain = f"{sum(r['on_chain'] for r in res['replies'])}/{len(res['replies'])}"
        for role in dict.fromkeys(run.attacks) or ("honest",):
            replies = [r for r in res["replies"] if r["role"] == role]
            selected = sum(r["status"] == "SELECTED" for r in replies)
            verified = sum(r["status"] in VERIFIED for r in replies)
            honest = run.name == "honest"
            lines.append(md_row(
                "none (honest-only)" if honest else role, f"{run.attacks.count(role)} / {run.nodes}", run.krum_f,
                "within" if run.within_bound else "**beyond**", "yes" if run.validation else "no (before)",
                "-" if honest else caught_by(replies, run), "-" if honest else f"{selected}/{verified}",
                f"{res['final_eval_loss']:.4f}", "-" if honest else percent(alone_delta),
                "-" if honest else percent(delta), chain,
                verdict(run, selected, alone_delta if alone_delta is not None else delta, res),
                f"{res['seconds']:.0f}"))
    return "\n".join(lines)


def earnings(res: dict, run: Run) -> str:
    """Who was paid (reward tokens pending on chain at the end): the attackers against the honest nodes; for
    copiers, their wallets together against the copied node 0's."""
    paid = res.get("rewards", [])
    attackers = [r["tokens"] for r in paid if r["role"] != "honest"]
    honest = [r["tokens"] for r in paid if r["role"] == "honest"]
    if not paid or not attackers:
        return "-"
    if run.attacks[0].startswith("sybil"):
        copied = next(r["tokens"] for r in paid if r["node"] == 0)
        span = f"honest {min(honest):.1f}-{max(honest):.1f}"
        return f"copiers {sum(attackers):.1f} together, copied node {copied:.1f} ({span})"
    return f"each ≤ {max(attackers):.1f} (honest {min(honest):.1f}-{max(honest):.1f})"


def selection_table(results: dict) -> str:
    """The runs of ``--plan selection``: who was averaged, with what weight, who was paid, and the final loss
    against the run's honest nodes alone."""
    lines = ["| attack | attackers / nodes | rule | attackers selected | attackers' weight a round | rewards (ZK0) | "
             "final eval loss | vs its honest nodes alone | verdict | run s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res, run in in_plan_order(results, selection_runs(7, 1)):
        alone_delta = loss_delta(res, results.get(run.alone().key))
        honest = run.name == "honest"
        bad = [r for r in res["replies"] if r["role"] != "honest"]
        selected = sum(r["status"] == "SELECTED" for r in bad)
        rounds = max(1, len({r["round"] for r in res["replies"]}))
        weight = sum(r.get("weight") or 0.0 for r in bad) / rounds
        statuses = ", ".join(f"{s} ×{c}" for s, c in sorted(Counter(r["status"] for r in bad).items()))
        lines.append(md_row(
            "none (honest-only)" if honest else run.name, f"{len(run.attacks)} / {run.nodes}", run.selection,
            "-" if honest else f"{selected}/{len(bad)} ({statuses})", "-" if honest else f"{weight:.1%}",
            "-" if honest else earnings(res, run), f"{res['final_eval_loss']:.4f}",
            "-" if honest else percent(alone_delta), verdict(run, selected, alone_delta, res), f"{res['seconds']:.0f}"))
    return "\n".join(lines)


def in_plan_order(results: dict, plan: list[Run]) -> list[tuple[dict, Run]]:
    """The stored results of ``plan``'s runs, with their runs, in the plan's order."""
    order = {run.key: i for i, run in enumerate(plan)}
    stored = [(res, Run(**_run_args(res))) for res in results.values()]
    return sorted(((res, run) for res, run in stored if run.key in order), key=lambda pair: order[pair[1].key])


def _run_args(res: dict) -> dict:
    return {**res["run"], "attacks": tuple(res["run"]["attacks"])}


def verdict(run: Run, selected: int, delta: float | None, res: dict) -> str:
    """``delta``: the final loss against the closest reference (the run's own honest nodes alone, if stored)."""
    if run.name == "honest":
        return "reference"
    parts = [f"selected {selected}×"] if selected else []
    if delta is not None and abs(delta) > LOSS_TOLERANCE:  # worse is harm; better is another honest subset
        parts.append(f"loss {delta:+.0%}" + (" (lower)" if delta < 0 else ""))
    if res["kept_global_rounds"]:
        parts.append(f"no quorum: global kept {res['kept_global_rounds']}×")
    return "; ".join(parts) if parts else "stopped"


def render(results: dict, machine: str, date: str, plan: str = "default") -> str:
    if plan in ("validation", "selection"):
        keys = {r.key for r in (validation_runs(7, 1) if plan == "validation" else selection_runs(7, 1))}
        results = {k: v for k, v in results.items() if k in keys} or results
    s = next(iter(results.values()))["settings"]
    refs = sorted((r for r in results.values() if r["run"]["name"] == "honest"), key=lambda r: r["run"]["honest"])
    commits = ", ".join(sorted({r["settings"].get("commit", "?") for r in results.values()}))
    ref_text = "; ".join(f"{r['run']['honest']} nodes{'' if r['run'].get('validation', True) else ' (no validation)'}: "
                         f"{r['initial_eval_loss']:.4f} → {r['final_eval_loss']:.4f}" for r in refs)
    return "\n".join([
        f"Generated by `scripts/eval_attacks.py` on {date}, {machine}, code at "
        f"commit{'s' if ',' in commits else ''} {commits}. "
        f"Each run is one verified federation (anvil, "
        f"EZKL proofs, EIP-712 signatures, the gate, Multi-Krum m = {s['krum_m']}, chain records) of {s['rounds']} "
        f"rounds on synthetic SO-100 data ({s['episodes']} episode × {s['frames']} frames per node), "
        f"{s['local_steps']} local steps at lr {s['lr']}, batch {s['batch_size']}, a proof slice of "
        f"{s['slice_rows']} rows, server eval on {s['eval_batches']} held-out batches. Honest-only server eval "
        f"loss, initial → final: {ref_text}."
        + (f" Validation: {s.get('min_gain', 0.01):.0%} min gain, the demo's validation set (synthetic, its own seeds)."
           if plan == "validation" else ""),
        "",
        table(results, plan),
    ])


def write_table(path: Path, text: str, plan: str = "default") -> None:
    """The table between the doc's markers, keeping the prose around it (or a new file)."""
    start, end = {"validation": (VAL_START, VAL_END), "selection": (SEL_START, SEL_END)}.get(plan, (START, END))
    write_section(path, start, end, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p, attacks=("", "comma-separated: run only the runs of these attacks ('honest' for the references, "
                             "'gate-suite' for the gate's); a run's reference runs too if not stored"),
                within=(False, "only runs within Krum's bound"), beyond=(False, "only runs beyond Krum's bound"),
                out=("", "markdown file for the table (default: <workdir>/table.md)"), workdir="outputs/eval-attacks",
                cache_dir=".zk0/fixtures", force=(False, "re-run runs already in results.json"),
                no_references=(False, "do not add the selected runs' references"),
                table_only=(False, "rebuild the table from results.json, run nothing"),
                nodes=(7, "nodes of every federation (gate suite: honest nodes)"), krum_f=1, krum_m=3, rounds=3,
                local_steps=10, batch_size=8, lr=1e-3, episodes=1, frames=24, slice_rows=16, eval_batches=3)
    p.add_argument("--plan", choices=["default", "validation", "selection"], default="default",
                   help="default: every attack (the first table); validation: the fabricated-witness attacks before "
                   "and after the validation gate, and the attacks that beat Krum beyond its bound; selection: "
                   "colluders and Sybil copies against selection by usefulness (and Multi-Krum)")
    add_options(p, min_gain=(0.01, "the federation's min_gain (to tell why a reply was not selected)"),
                machine="2 cores, 24 GiB, no GPU", date=time.strftime("%Y-%m-%d"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    plans = {"validation": validation_runs, "selection": selection_runs, "default": default_runs}
    runs = plans[args.plan](args.nodes, args.krum_f)
    if args.attacks:
        wanted = set(args.attacks.split(","))
        runs = [r for r in runs if r.name in wanted or wanted & set(r.attacks)]
    if args.within or args.beyond:
        runs = [r for r in runs if r.within_bound == args.within]
    if not args.no_references:
        runs = list(dict.fromkeys(x for r in runs for x in ((r.reference(), r) if r.reference().key not in results
                                                            else (r,))))
    for run in [] if args.table_only else runs:
        if run.key in results and not args.force:
            log.info("%s: stored, skipping (--force re-runs it)", run.key)
            continue
        log.info("%s: running (%s Krum's bound)", run.key, "within" if run.within_bound else "BEYOND")
        try:
            results[run.key] = run_one(run, args)
        except Exception:
            log.error("%s failed:\n%s", run.key, traceback.format_exc())
            continue
        store.write_text(json.dumps(results, indent=1))
        write_table(Path(args.out or workdir / "table.md"), render(results, args.machine, args.date, args.plan),
                    args.plan)
        res = results[run.key]
        log.info("%s: final eval loss %.4f in %.0f s; attackers: %s", run.key, res["final_eval_loss"], res["seconds"],
                 Counter((r["role"], r["status"]) for r in res["replies"] if r["role"] != "honest"))
    if results:
        write_table(Path(args.out or workdir / "table.md"), render(results, args.machine, args.date, args.plan),
                    args.plan)
        print(table(results, args.plan))


if __name__ == "__main__":
    main()
