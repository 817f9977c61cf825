"""Faults injected into a verified deployment, as an operator meets them; chain vs summary.json after each.

One loopback deployment (real anvil and registry, ``zk0agg start``, three ``zk0node start`` SuperNodes, the dev
SRS, synthetic fixtures, the tiny SmolVLA) serves every scenario: each is one or two ``zk0agg run`` of two rounds
with its fault injected by signal, then ``aggregator.ledger.audit.audit_run`` compares the chain's records with the
run's summary.json. The table goes into docs/reliability.md between its markers.

    .venv/bin/python scripts/eval_faults.py                      # every scenario (~40 min on an idle 2-core machine)
    .venv/bin/python scripts/eval_faults.py --only chain-down kill-node
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from doc_section import write_section  # noqa: E402

from aggregator.ledger.audit import audit_run  # noqa: E402
from aggregator.tools.deploy import ManagedProcess, free_port, start_process, wait_nodes  # noqa: E402
from aggregator.tools.fixtures import synthetic_fixtures  # noqa: E402
from contracts import LocalChain, Registry, connect, create_keystore  # noqa: E402
from node.trust import build_app_bundle, bundle_hash  # noqa: E402

PASSWORD = "eval-faults-password"
NODES, ROUNDS = 3, 2
DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"


def module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


@dataclass
class Lab:
    """The deployment every scenario runs on."""

    work: Path
    cache_dir: Path
    chain: LocalChain | None = None
    registry: Registry | None = None
    superlink: ManagedProcess | None = None
    nodes: dict[int, ManagedProcess] = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    port: int = 0
    runs: int = 0
    extra_chains: list[LocalChain] = field(default_factory=list)  # chains of the runs that brought their own

    def start(self) -> Lab:
        from eth_account import Account

        self.fixtures = synthetic_fixtures(self.cache_dir, NODES, episodes=1, frames=24)
        fab = build_app_bundle()
        (self.work / "app.fab").write_bytes(fab)
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLWR_TELEMETRY_ENABLED": "0"}
        self.chain = LocalChain(state_path=self.work / "anvil-state.json").start()
        owner, aggregator = self.chain.private_keys[:2]
        self.registry = Registry.deploy(connect(self.chain.rpc_url), owner, Account.from_key(aggregator).address)
        key_file = self.work / "aggregator.key"
        key_file.write_text(aggregator + "\n")
        key_file.chmod(0o600)
        self.wallets = []
        for i in range(NODES):
            self.wallets.append(self.work / f"wallet{i}.json")
            self.registry.approve_node(create_keystore(self.wallets[-1], PASSWORD))
        self.port = free_port()
        self.superlink = start_process("zk0agg start", module(
            "aggregator.cli", "start", "--insecure", "--port", str(self.port), "--chain-rpc", self.chain.rpc_url,
            "--registry", self.registry.address, "--aggregator-key-file", str(key_file), "--app-hash",
            bundle_hash(fab), "--state-dir", str(self.work / "aggregator")), self.work / "zk0agg-start.log",
            env={**self.env, "FLWR_HOME": str(self.work / "flwr-aggregator")})
        self.digest = bundle_hash(fab)
        for i in range(NODES):
            self.start_node(i)
        self.wait_nodes()
        return self

    def start_node(self, i: int) -> None:
        env = {**self.env, "FLWR_HOME": str(self.work / f"flwr-node{i}"), "ZK0_WALLET_PASSWORD": PASSWORD}
        self.nodes[i] = start_process(f"zk0node start {i}", module(
            "node.cli", "start", "--superlink", f"127.0.0.1:{self.port}", "--insecure", "--dataset",
            self.fixtures.nodes[i], "--wallet", str(self.wallets[i]), "--app-hash", self.digest, "--cache-dir",
            str(self.cache_dir), "--state-dir", str(self.work / f"node{i}"), "--runtime-port", str(free_port()),
            "--max-wait-time", "180"), self.work / f"node{i}.log", env=env)

    def wait_nodes(self) -> None:
        wait_nodes(f"127.0.0.1:{self.port}", NODES, list(self.nodes.values()), timeout=300)

    def submit(self, out: Path, resume: bool = False) -> subprocess.Popen:
        """``zk0agg run`` as the operator types it; its output goes to ``out``.log."""
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = module("aggregator.cli", "run", "--model", "tiny", "--rounds", str(ROUNDS), "--min-nodes", str(NODES),
                      "--local-steps", "3", "--fraction-evaluate", "0", "--heldout", self.fixtures.heldout,
                      "--cache-dir", str(self.cache_dir), "--out", str(out), "--fab", str(self.work / "app.fab"),
                      "--state-dir", str(self.work / "aggregator"), "--timeout", "300", "-c", "eval-batches=2")
        log = open(f"{out}{'.resume' if resume else ''}.log", "w")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen([*argv, "--resume"] if resume else argv, stdout=log, stderr=subprocess.STDOUT,
                                env={**self.env, "FLWR_HOME": str(self.work / "flwr-aggregator")})

    def serverapp(self) -> psutil.Process | None:
        """The ServerApp process (``flwr-serverapp``, through zk0's app guard), below ``zk0agg start``."""
        for proc in psutil.Process(self.superlink.pid).children(recursive=True):
            try:
                cmd = " ".join(proc.cmdline())
                if "serverapp" in cmd and "superexec" not in cmd and "superlink" not in cmd:
                    return proc
            except psutil.NoSuchProcess:
                continue
        return None

    def stop(self) -> None:
        for process in [*self.nodes.values(), self.superlink]:
            if process is not None:
                process.stop()
        for chain in [self.chain, *self.extra_chains]:
            if chain is not None:
                chain.stop()


# ----------------------------------------------------------------------------------------------- observation
def journal_has(out: Path, kind: str, round_: int) -> bool:
    path = out / "chain-journal.sqlite"
    if not path.exists():
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT 1 FROM ops WHERE kind = ? AND round = ? LIMIT 1", (kind, round_)).fetchone()
    except sqlite3.Error:
        return False


def summary_rounds(out: Path) -> int:
    try:
        return len(json.loads((out / "summary.json").read_text())["rounds"])
    except (OSError, ValueError, KeyError):
        return 0


def interrupted_after(out: Path) -> int | None:
    """The round after which a Ctrl-C stopped the run (summary.json's ``interrupted_after``), None if it did not."""
    try:
        return json.loads((out / "summary.json").read_text()).get("interrupted_after")
    except (OSError, ValueError):
        return None


def wait_until(what: Callable[[], bool], running: subprocess.Popen, timeout: float = 900) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if running.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def finish(running: subprocess.Popen, timeout: float = 1200) -> str:
    """Wait for ``zk0agg run``; what the operator saw: its exit status and its last line."""
    try:
        running.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        running.kill()
        running.wait()
    log = Path(running.args[running.args.index("--out") + 1] + (".resume" if "--resume" in running.args else "")
               + ".log").read_text(errors="replace")
    ended = re.findall(r"^run \d+ (\w+)(.*?);", log, re.MULTILINE)
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    last = f"run {ended[-1][0]}{ended[-1][1][:80]}" if ended else (lines[-1][:100] if lines else "(no output)")
    return f"exit {running.returncode}, {last}"


# ----------------------------------------------------------------------------------------------- scenarios
@dataclass
class Row:
    fault: str
    seen: str
    outs: list[Path]
    note: str = ""
    chain: tuple[str, str] | None = None  # (RPC, registry) when the run recorded elsewhere than the lab's chain


def refused(argv: list[str], env: dict, what: str) -> str:
    """Run a command that must refuse: its exit status and its stderr's last line (the operator's one line)."""
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    return f"{what}: exit {done.returncode}, {len(lines)} line(s): {lines[-1][:110] if lines else '(none)'}"


def plain(lab: Lab, out: Path) -> Row:
    return Row("none (reference)", finish(lab.submit(out)), [out])


def second_run(lab: Lab, out: Path) -> Row:
    """The same run twice on one registry (same seeds: round 1 has the same global model both times)."""
    first = finish(lab.submit(out.with_name(out.name + "-a")))
    second = finish(lab.submit(out.with_name(out.name + "-b")))
    return Row("a second run on the same registry", f"1st {first}; 2nd {second}",
               [out.with_name(out.name + "-a"), out.with_name(out.name + "-b")])


def chain_down(lab: Lab, out: Path) -> Row:
    """anvil killed once round 1 is in the summary, back 60 s later (same state, same port)."""
    running = lab.submit(out)
    hit = wait_until(lambda: summary_rounds(out) >= 1, running)
    if hit:
        lab.chain.stop()
        time.sleep(60)
        lab.chain.start()
    return Row("chain down 60 s mid-run, then back", finish(running), [out], "" if hit else "fault not injected")


def kill_serverapp(phase: str) -> Callable[[Lab, Path], Row]:
    """SIGKILL the ServerApp at ``phase``, then ``zk0agg run --resume``: when round 2 is opened on chain (``open``),
    when round 2's records are journalled (``records``), or as soon as summary.json holds round 1 (``summary``: the
    round's journal rows may or may not have been released yet)."""
    markers = {"open": lambda out: journal_has(out, "open", 2),
               "records": lambda out: journal_has(out, "record", 2) or journal_has(out, "reject", 2),
               "summary": lambda out: summary_rounds(out) >= 1}
    when = {"open": "in round 2 (open)", "records": "in round 2 (records)",
            "summary": "once round 1 is in summary.json"}[phase]

    def scenario(lab: Lab, out: Path) -> Row:
        running = lab.submit(out)
        proc = lab.serverapp() if wait_until(lambda: markers[phase](out), running) else None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
        killed = finish(running)
        resumed = finish(lab.submit(out, resume=True))
        return Row(f"ServerApp SIGKILLed {when}, then --resume", f"killed: {killed}; resume: {resumed}", [out],
                   "" if proc is not None else "fault not injected")
    return scenario


def kill_node(lab: Lab, out: Path) -> Row:
    """A SuperNode and everything it started SIGKILLed when its ClientApp starts in round 1, and started again at
    once (a machine that reboots): round 2 waits for all three nodes."""
    running = lab.submit(out)
    node = lab.nodes[0]
    hit = wait_until(lambda: "Start `flwr-clientapp` process" in node.log_tail(100_000)[-20_000:], running)
    if hit:
        node.kill()
        lab.start_node(0)
    return Row("a node SIGKILLed mid-round (restarted at once)", finish(running), [out],
               "" if hit else "fault not injected")


def stop_node(lab: Lab, out: Path) -> Row:
    """A SuperNode and its ClientApp frozen (SIGSTOP) 90 s mid-round, then SIGCONT."""
    running = lab.submit(out)
    node = lab.nodes[1]
    hit = wait_until(lambda: "Start `flwr-clientapp` process" in node.log_tail(100_000)[-20_000:], running)
    if hit:
        tree = node._tree()
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):  # a task process may end as we go
                proc.send_signal(signal.SIGSTOP)
        time.sleep(90)
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)
    return Row("a node frozen 90 s mid-round (SIGSTOP/SIGCONT)", finish(running), [out],
               "" if hit else "fault not injected")


def cpu_saturated(lab: Lab, out: Path) -> Row:
    """Every core busy with another process for the whole run."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        seen = finish(lab.submit(out))
    finally:
        for hog in hogs:
            hog.kill()
    return Row(f"all {len(hogs)} cores saturated by another process", seen, [out])


def ctrl_c_run(lab: Lab, out: Path) -> Row:
    """Ctrl-C (SIGINT) of ``zk0agg run`` once round 1 is in summary.json, then ``--resume`` to the end."""
    running = lab.submit(out)
    hit = wait_until(lambda: summary_rounds(out) >= 1, running)
    if hit:
        running.send_signal(signal.SIGINT)
    stopped = finish(running)
    took = interrupted_after(out) is not None
    resumed = finish(lab.submit(out, resume=True))
    return Row("Ctrl-C of zk0agg run in round 2, then --resume", f"Ctrl-C: {stopped}; resume: {resumed}", [out],
               "" if hit and took else "fault not injected" if not hit else "the run did not stop")


def second_resume(lab: Lab, out: Path) -> Row:
    """``zk0agg run --resume`` on the folder of a run that is still going (round 1 in its summary)."""
    running = lab.submit(out)
    hit = wait_until(lambda: summary_rounds(out) >= 1, running)
    second = finish(lab.submit(out, resume=True)) if hit else "not tried"
    return Row("a second --resume while the run goes on", f"2nd: {second}; 1st: {finish(running)}", [out],
               "" if hit else "fault not injected")


def chain_down_at_submit(lab: Lab, out: Path) -> Row:
    """anvil stopped when ``zk0agg run`` is typed; back afterwards."""
    lab.chain.stop()
    try:
        seen = finish(lab.submit(out))
    finally:
        lab.chain.start()
    return Row("chain down when the run is submitted", seen, [])


def verifier_down(lab: Lab, out: Path) -> Row:
    """``zk0agg start --verifier-url`` naming a port where no verifier answers."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "token").write_text("t0ken\n")
    seen = refused(module("aggregator.cli", "start", "--insecure", "--port", str(free_port()), "--chain-rpc",
                          lab.chain.rpc_url, "--registry", lab.registry.address, "--aggregator-key-file",
                          str(lab.work / "aggregator.key"), "--verifier-url", f"http://127.0.0.1:{free_port()}",
                          "--verifier-token-file", str(out / "token"), "--state-dir", str(out / "state")),
                   lab.env, "zk0agg start")
    return Row("verifier down when the aggregator starts", seen, [])


def ctrl_c_demo(lab: Lab, out: Path) -> Row:
    """Ctrl-C of ``zk0agg demo`` (SIGINT to its whole process group, as a terminal sends it) once round 1 is in its
    summary; the demo's own chain is brought back from its state file to audit it."""
    argv = module("aggregator.cli", "demo", "--data", "synthetic", "--model", "tiny", "--nodes", str(NODES),
                  "--rounds", str(ROUNDS + 1), "--local-steps", "3", "--eval-episodes", "0", "--out", str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.log", "w") as log:
        demo = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=lab.env, start_new_session=True)
        hit = wait_until(lambda: summary_rounds(out) >= 1, demo, timeout=1800)
        if hit:
            os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    lines = [ln.strip() for ln in Path(f"{out}.log").read_text(errors="replace").splitlines() if ln.strip()]
    ended = next((ln for ln in reversed(lines) if ln.startswith("demo ")), lines[-1] if lines else "(no output)")
    chain = LocalChain(state_path=out / "anvil-state.json").start()
    lab.extra_chains.append(chain)
    registry = json.loads((out / "summary.json").read_text())["chain"]["registry"] if hit else ""
    took = interrupted_after(out) is not None
    return Row("Ctrl-C of zk0agg demo in round 2", f"exit {demo.returncode}, {ended[:110]}", [out],
               "" if hit and took else "fault not injected" if not hit else "the demo did not stop",
               (chain.rpc_url, registry))


SCENARIOS: dict[str, Callable[[Lab, Path], Row]] = {
    "none": plain, "second-run": second_run, "chain-down": chain_down,
    "kill-serverapp-open": kill_serverapp("open"), "kill-serverapp-records": kill_serverapp("records"),
    "kill-serverapp-summary": kill_serverapp("summary"), "kill-node": kill_node, "stop-node": stop_node,
    "cpu-saturated": cpu_saturated, "ctrl-c-run": ctrl_c_run, "second-resume": second_resume,
    "chain-down-at-submit": chain_down_at_submit, "verifier-down": verifier_down, "ctrl-c-demo": ctrl_c_demo,
}


# ----------------------------------------------------------------------------------------------- table
def tally(lab: Lab, row: Row) -> dict:
    on_chain = wrong = lost = 0
    details = []
    for out in row.outs:
        try:
            summary = json.loads((out / "summary.json").read_text())
        except (OSError, ValueError):
            details.append(f"{out.name}: no summary.json")
            continue
        rpc, address = row.chain or (lab.chain.rpc_url, lab.registry.address)
        audit = audit_run(summary, Registry.at(connect(rpc), address))
        on_chain, wrong, lost = on_chain + audit.on_chain, wrong + len(audit.wrong), lost + len(audit.lost)
        details += audit.wrong + audit.lost
    return {"fault": row.fault, "seen": row.seen, "on_chain": on_chain, "wrong": wrong, "lost": lost,
            "details": details, "note": row.note}


def table(results: list[dict]) -> str:
    lines = [f"Measured by `scripts/eval_faults.py` ({NODES} nodes × {ROUNDS} rounds each, tiny SmolVLA, dev SRS, real "
             "anvil, Flower's deployment engine on loopback; machine cpu s: every process on the 2-core machine "
             "during the scenario, other work included).", "",
             "| fault | what the operator sees | records on chain | records wrong | records lost | wall s / machine "
             "cpu s, load | commit |", "|---|---|---|---|---|---|---|"]
    for r in results:
        seen = r["seen"].replace("|", "/") + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"| {r['fault']} | {seen} | {r['on_chain']} | {r['wrong']} | {r['lost']} | "
                     f"{r.get('wall_s')} / {r.get('machine_cpu_s')}, {r['load'].split()[0]} | `{r['commit']}` |")
    problems = [f"- {r['fault']}: {d}" for r in results for d in r["details"]]
    return "\n".join(lines + ([""] + problems if problems else [])) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="run these scenarios (default: all)")
    p.add_argument("--work", default="outputs/eval-faults", help="working folder (logs, runs)")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "zk0"))
    p.add_argument("--no-doc", action="store_true", help="print the table only, do not write docs/reliability.md")
    p.add_argument("--results", default="outputs/eval-faults/results.json",
                   help="results kept across invocations (a scenario run again replaces its row)")
    p.add_argument("--doc-only", action="store_true", help="write the table from --results, run nothing")
    args = p.parse_args()
    # A script started in the background of a shell inherits SIGINT ignored, and so would every command it starts:
    # the Ctrl-C scenarios need it delivered as a terminal delivers it (Python's handler here, the default in them).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kept = Path(args.results)
    if args.doc_only:
        rows = {r["scenario"]: r for r in json.loads(kept.read_text())}
        write_section(DOC, START, END, table([rows[name] for name in SCENARIOS if name in rows]))
        return
    work = Path(args.work).resolve() / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    load = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    lab = Lab(work, Path(args.cache_dir)).start()
    results = []
    try:
        for name in args.only or list(SCENARIOS):
            t0, cpu0 = time.monotonic(), psutil.cpu_times()
            print(f"== {name}", flush=True)
            results.append({"scenario": name, **tally(lab, SCENARIOS[name](lab, work / "runs" / name))})
            cpu1 = psutil.cpu_times()
            results[-1]["wall_s"] = round(time.monotonic() - t0)
            results[-1]["machine_cpu_s"] = round(cpu1.user + cpu1.system - cpu0.user - cpu0.system)
            print(json.dumps(results[-1], indent=1), flush=True)
    finally:
        lab.stop()
        (work / "results.json").write_text(json.dumps(results, indent=1))
    rows = {r["scenario"]: r for r in (json.loads(kept.read_text()) if kept.exists() else [])}
    rows.update({r["scenario"]: {**r, "commit": commit, "load": load} for r in results})
    results = [rows[name] for name in SCENARIOS if name in rows]
    kept.write_text(json.dumps(results, indent=1))
    text = table(results)
    print(text)
    if not args.no_doc:
        write_section(DOC, START, END, text, title="# Reliability: faults and what the chain records\n\n")


if __name__ == "__main__":
    main()
