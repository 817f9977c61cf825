"""Flower's deployment engine on loopback, driven by the operators' own commands, as their guides print them.

The set-up is the rehearsal of docs/operator-aggregator.md §1a and docs/operator-node.md §9, each block run in bash
as written (only its port numbers changed to free ones): ``zk0agg chain up`` (anvil, the dev keys), deploy-registry,
fixtures, ``zk0agg start``, each node's wallet, funds, stake and ``zk0node start``, the owner's approvals, ``zk0agg
run`` for two rounds and ``zk0agg contributions``. Beside the guides' three nodes the test starts two of its own,
from the same wallet set-up: one pinned to another app bundle, and one that is killed (SIGKILL, with everything it
started) as soon as its ClientApp starts in round 1. Each process gets its own ``FLWR_HOME`` (like separate
machines), and the folder's ``.zk0/fixtures`` is the session's model and circuit cache, so nothing is built twice.
The SuperLink is also sent a bundle it has not pinned. Every process is stopped, with everything it started, in
``finally``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from aggregator.tools.deploy import (
    follow_run,
    free_port,
    read_state,
    start_process,
    submit_run,
    wait_for_port,
    wait_nodes,
)
from contracts import Registry, Status, connect
from node.trust import bundle_hash

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [ROOT / "docs" / "operator-aggregator.md", ROOT / "docs" / "operator-node.md"]
HONEST = 3  # the guides' nodes
OTHER_APP = "cd" * 32  # what the fourth node pins: not the bundle the aggregator runs
KILLED = HONEST + 1  # the fifth node dies mid-round
ROUND_TIMEOUT = 300  # seconds a round waits for replies (the guide's zk0agg run --timeout)
OUT = "trial-run"  # the guide's zk0agg run --out


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def rehearsal_blocks(ports: dict[str, int]) -> dict[str, str]:
    """The guides' rehearsal blocks by name (``<!-- rehearsal: NAME ... -->`` before a bash block), with the
    documented ports (8545 chain, 9092 SuperLink, 9094 + N nodes' runtime) replaced by ``ports``."""
    blocks = {}
    for guide in GUIDES:
        for name, block in re.findall(r"<!-- rehearsal: ([\w-]+)[^\n]*-->\n```bash\n(.*?)```", guide.read_text(), re.S):
            for documented, port in ports.items():
                block = re.sub(rf"\b{documented}\b", str(port), block)
            blocks[name] = block
    return blocks


def run_block(name: str, script: str, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"the guide's {name} block failed:\n{script}\n{output}"
    return done


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    while True:
        base = free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


def wait_for_file(path: Path, processes, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for p in processes:
            assert p.running(), f"{p.name} exited:\n{p.log_tail()}"
        assert time.monotonic() < deadline, f"{path} not written within {timeout:.0f} s"
        time.sleep(0.5)


def kill_when_training(process, marker: str = "Start `flwr-clientapp` process") -> dict:
    """Kill ``process`` and everything it started once its log shows it began working on a round; returns
    (filled in later) when that happened."""
    killed: dict = {}

    def watch() -> None:
        while process.running():
            if marker in process.log_tail(100_000):
                process.kill()
                killed["at"] = time.monotonic()
                return
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    return killed


def supernode_id(log: str) -> int:
    return int(re.search(r"SuperNode ID: (\d+)", log).group(1))


def prebuild_circuit(heldout: str, cache_dir: Path) -> None:
    """The circuit the run will use, built into the shared cache before the ServerApp starts (it then loads it):
    the test's time goes to the run, not to a set-up other tests share. (Built inside the ServerApp it once cost
    the run its heartbeat on a loaded machine: EZKL holds the GIL for a whole call. Its long calls now run in a
    child process, prover/ezkl_process.py.)"""
    from node.contribution import slice_shape
    from node.datasets import load_metadata
    from node.model import make_smolvla
    from prover import build_circuit

    policy = make_smolvla("tiny", load_metadata(heldout), cache_dir).policy
    build_circuit(slice_shape(policy, 16), "dev", cache_dir)  # the run's slice-rows (FederationConfig default)


def status_commands(state_dir: Path, node_dir: Path, env: dict) -> dict:
    """``zk0agg status``, and ``zk0node status`` of the node whose ``--state-dir`` is ``node_dir``."""
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(python_module(*argv), capture_output=True, text=True, timeout=120, env=env)

    return {"aggregator": run("aggregator.cli", "status", "--state-dir", str(state_dir)),
            "node": run("node.cli", "status", "--state-dir", str(node_dir))}


def fixture_uri(work: Path, label: str) -> str:
    """A URI ``zk0agg fixtures`` printed (the guide's fixtures.txt): ``label`` is ``node 0``, ``held-out``..."""
    return re.search(rf"^{label}: (\S+)$", (work / "fixtures.txt").read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def deployed(cache_dir, tmp_path_factory):
    t0 = time.monotonic()
    work = tmp_path_factory.mktemp("deployment")
    (work / ".zk0").mkdir()
    (work / ".zk0" / "fixtures").symlink_to(cache_dir)  # the session's model and circuit cache
    chain_port, superlink_port, runtime_base = free_port(), free_port(), free_ports(KILLED + 1)
    blocks = rehearsal_blocks({"8545": chain_port, "9092": superlink_port, "9094": runtime_base})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # the guide's active venv
    for secret in ("ZK0_WALLET_PASSWORD", "ZK0_OWNER_KEY", "ZK0_AGGREGATOR_KEY"):
        env.pop(secret, None)
    agg_env = {**env, "FLWR_HOME": str(work / "flwr-aggregator")}
    processes = []

    def foreground(name: str, log: str, script: str, process_env: dict):
        processes.append(start_process(name, ["bash", "-c", script], work / log, env=process_env, cwd=work))
        return processes[-1]

    try:
        chain = foreground("zk0agg chain up", "chain.log", blocks["chain"], env)
        wait_for_port("127.0.0.1", chain_port, chain)
        wait_for_file(work / "aggregator.key", [chain])
        run_block("aggregator-setup", blocks["aggregator-setup"], work, env)
        prebuild_circuit(fixture_uri(work, "held-out"), cache_dir)
        state_dir = work / ".zk0" / "aggregator"
        foreground("zk0agg start", "zk0agg-start.log", blocks["aggregator"], agg_env)
        setups = [subprocess.Popen(["bash", "-euo", "pipefail", "-c", blocks["node-setup"]], cwd=work,
                                   env={**env, "N": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True) for i in range(KILLED + 1)]  # five operators at once
        for i, setup in enumerate(setups):
            output = setup.communicate(timeout=300)[0]
            assert setup.returncode == 0, f"node {i}'s node-setup block failed:\n{output[-3000:]}"
        run_block("approve", blocks["approve"], work, env)
        wait_for_file(state_dir / "federation.json", processes)
        state = read_state(state_dir / "federation.json")
        digest = state["app_hashes"][0]
        for i in range(KILLED + 1):  # the guide's nodes, then the test's two
            node_env = {**env, "N": str(i), "FLWR_HOME": str(work / f"flwr-node{i}")}
            if i < HONEST:
                foreground(f"zk0node start {i}", f"node{i}.log", blocks["node"], node_env)
                continue
            processes.append(start_process(f"zk0node start {i}", python_module(
                "node.cli", "start", "--superlink", f"127.0.0.1:{superlink_port}", "--insecure", "--srs", "dev",
                "--dataset", fixture_uri(work, f"node {i % HONEST}"), "--wallet", f"node{i}/wallet.json",
                "--password-file", f"node{i}/pw", "--app-hash", digest if i > HONEST else OTHER_APP,
                "--state-dir", f"node{i}", "--runtime-port", str(runtime_base + i), "--max-wait-time", "180"),
                work / f"node{i}.log", env=node_env, cwd=work))
        nodes = processes[2:]
        # Every node connected: round 1 goes to all. Five `zk0node start`s (keystore scrypt, dataset and SRS checks)
        # took over 120 s with the cores busy (the fresh-clone suite beside a training run): wait as a round waits.
        wait_nodes(f"127.0.0.1:{superlink_port}", len(nodes), nodes, timeout=ROUND_TIMEOUT)
        killed = kill_when_training(nodes[KILLED])
        t_up = time.monotonic()
        running = subprocess.Popen(["bash", "-euo", "pipefail", "-c", blocks["run"]], cwd=work, env=agg_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        status = {}
        try:  # the operators' status views while round 2 runs, then after the run
            out_summary = work / OUT / "summary.json"
            while running.poll() is None and not (out_summary.exists() and
                                                   json.loads(out_summary.read_text())["rounds"]):
                time.sleep(1.0)
            status["during"] = status_commands(state_dir, work / "node0", agg_env)  # an honest node
            stdout, stderr = running.communicate(timeout=900)
        finally:
            if running.poll() is None:
                running.kill()
        run = subprocess.CompletedProcess(running.args, running.returncode, stdout, stderr)
        t_run = time.monotonic()
        status["after"] = status_commands(state_dir, work / f"node{KILLED}", agg_env)  # the node killed
        contributions = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks["records"]], cwd=work,
                                       capture_output=True, text=True, timeout=120, env={**agg_env, "COLUMNS": "250"})
        registry = Registry.at(connect(f"http://127.0.0.1:{chain_port}"), state["registry"])
        print(f"timings: start-up {t_up - t0:.0f} s, zk0agg run {t_run - t_up:.0f} s")
        wallets = [str(work / f"node{i}" / "wallet.json") for i in range(KILLED + 1)]
        yield SimpleNamespace(work=work, out=work / OUT, run=run, contributions=contributions, registry=registry,
                              digest=digest, wallets=wallets,
                              state=state, processes=processes, killed=killed, t_up=t_up, status=status,
                              killed_id=supernode_id(nodes[KILLED].log_tail(100_000)))
    finally:
        for process in reversed(processes):
            process.stop()


def addresses(wallets: list[str]) -> list[str]:
    from contracts import read_address

    return [read_address(w) for w in wallets]


def flwr_run(tmp_path: Path, address: str, *args: str) -> subprocess.CompletedProcess:
    """``flwr run`` of this source tree, as anyone who reaches the SuperLink could type it (its own FLWR_HOME)."""
    home = tmp_path / "flwr-stranger"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(f'[superlink]\ndefault = "link"\n\n[superlink.link]\naddress = "{address}"\n'
                                      'insecure = true\n')
    return subprocess.run([str(Path(sys.executable).parent / "flwr"), "run", str(ROOT), "link", "--format", "json",
                           *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"})


def test_a_run_the_operator_did_not_submit_is_refused(deployed, tmp_path):
    """N1 (issue 30): the Control API has no login, and a run submitted with plain ``flwr run`` (no ``zk0agg run``,
    so no ``runs/<id>.json`` on the aggregator's machine) used the operator's key and validation set with the
    submitter's tolerances, Krum and rounds. Now the verdict settings are not in the app's run config (the SuperLink
    refuses them), and a run of the pinned bundle without its run file is refused by the ServerApp before it touches
    the key, the chain or the nodes: the run fails with one line that says why; nothing signed, nothing written."""
    from flwr.proto.control_pb2 import ListRunsRequest

    from aggregator.tools.deploy import control_client

    address, registry = deployed.state["superlink"], deployed.registry
    aggregator = registry.aggregator()
    nonce, rounds = registry.w3.eth.get_transaction_count(aggregator), len(registry.rounds())
    client = control_client(address, insecure=True)
    try:
        runs_before = set(client.ListRuns(ListRunsRequest()).run_dict)
        generous = flwr_run(tmp_path, address, "--run-config", "rounds=1000 krum-m=50 min-nodes=1 min-gain=0.0")
        answer = json.loads(generous.stdout)  # flwr run --format json exits 0 and says it in the JSON
        assert not answer["success"] and "Invalid run configuration" in answer["error-message"], answer
        assert set(client.ListRuns(ListRunsRequest()).run_dict) == runs_before  # refused by the SuperLink
    finally:
        client.close()
    plain = flwr_run(tmp_path, address)
    answer = json.loads(plain.stdout)
    assert plain.returncode == 0 and answer["success"], f"{plain.stdout}\n{plain.stderr}"
    run_id = int(answer["run-id"])
    result = follow_run(address, run_id, insecure=True, timeout=300)
    log = "".join(result.log_lines)
    assert result.status == "failed", (result, log[-3000:])
    assert "refused app bundle" not in log, "the source tree changed while the deployment ran (others' edits?)"
    why = f"run {run_id} refused: the aggregator's operator did not submit it"
    assert why in log and "Traceback" not in log, log[-3000:]
    assert why in (deployed.work / ".zk0" / "aggregator" / "superlink.log").read_text()  # the operator's log too
    assert registry.w3.eth.get_transaction_count(aggregator) == nonce and len(registry.rounds()) == rounds
    state_dir = deployed.work / ".zk0" / "aggregator"
    assert not (state_dir / "runs" / f"{run_id}.json").exists() and not (state_dir / "outputs").exists()
    assert [p.parent for p in deployed.work.glob("*/summary.json")] == [deployed.out]  # the guide's run's only


def test_verified_run(deployed):
    run = deployed.run
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    summary = json.loads((deployed.out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert summary["chain"]["pending_operations"] == 0
    honest = addresses(deployed.wallets[:HONEST])
    for entry in summary["rounds"]:
        nodes = {n["claimed_address"]: n for n in entry["nodes"]}
        for address in honest:
            assert nodes[address]["status"] in ("SELECTED", "NOT_SELECTED"), nodes[address]
            assert nodes[address]["loss_after"] < nodes[address]["loss_before"]
        assert sum(n["status"] == "SELECTED" for n in entry["nodes"]) == 2  # MultiKrum m = 2 of 3 verified
        # on chain: the round closed with the summary's hashes, one record per reply, the same outcomes
        info = deployed.registry.round_info(summary["chain"]["run_id"], entry["round"])
        assert (info.state, info.global_hash, info.new_global_hash) == ("closed", entry["global_hash"],
                                                                         entry["new_global_hash"])
        records = {r.node: r for r in deployed.registry.round_records(summary["chain"]["run_id"], entry["round"])}
        alive = [n for n in entry["nodes"] if n["node_id"] != deployed.killed_id]
        assert len(records) == len(entry["nodes"]) and len(alive) == HONEST + 1
        for node in entry["nodes"]:
            record = records[node["address"]]
            if node["status"] in ("SELECTED", "NOT_SELECTED"):
                assert record.signed and record.status == Status[node["status"]]
                assert record.update_hash == node["update_hash"]
            else:
                assert not record.signed and record.status == Status.REJECTED
    assert "0x" in run.stdout and "SELECTED" in run.stdout  # the ServerApp's round tables, streamed back
    node_log = (deployed.work / "node0.log").read_text()
    # each message ran in a process the node's warm host forked (node.app_guard), and said where its time went
    assert node_log.count("zk0 clientapp host: task process") >= 2 and "zk0 train message, round 1" in node_log
    table = deployed.contributions
    assert table.returncode == 0, table.stderr
    for address in honest:
        assert table.stdout.count(address) == 2, table.stdout  # one row per round


def test_the_aggregators_state_is_its_own(deployed):
    """N12 (issue 30): ``zk0agg start`` left its state folder 0755 and the SuperLink's database and log 0644. The
    folder is 0700 and every file in it 0600, the SuperLink's included."""
    import stat

    state_dir = deployed.work / ".zk0" / "aggregator"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    files = [f for f in state_dir.iterdir() if f.is_file()]
    assert any(f.name.startswith("superlink.db") for f in files) and (state_dir / "federation.json") in files
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: "0o600" for f in files}


def test_secret_stays_off_the_run_config(deployed):
    """The aggregator key reached the ServerApp (rounds were recorded) through its environment only."""
    key = (deployed.work / "aggregator.key").read_text().strip()
    summary_text = (deployed.out / "summary.json").read_text()
    assert key not in summary_text and key.removeprefix("0x") not in summary_text
    for i in range(KILLED + 1):
        assert key.removeprefix("0x") not in (deployed.work / f"node{i}.log").read_text()


def test_node_refuses_unpinned_app(deployed):
    """The node pinned to another bundle never unpacks the aggregator's: each round it replies with an error."""
    log = (deployed.work / f"node{HONEST}.log").read_text()
    assert f"refused app bundle sha256 {deployed.digest}" in log
    assert not list((deployed.work / f"flwr-node{HONEST}").glob("apps/*"))  # nothing of the bundle on disk
    assert list((deployed.work / "flwr-node0").glob(f"apps/*{deployed.digest[:8]}*"))  # an honest node ran it
    summary = json.loads((deployed.out / "summary.json").read_text())
    for entry in summary["rounds"]:
        refused = [n for n in entry["nodes"] if n["status"] == "MALFORMED" and "refused app bundle" in n["detail"]]
        assert len(refused) == 1, entry["nodes"]


def test_killed_node_does_not_stall_the_round(deployed):
    """A SuperNode killed mid-round: the SuperLink stops hearing its heartbeat and answers for it with an error
    reply, which the gate rejects; the round finishes with the others well before its timeout, the rejection is on
    chain, and round 2 goes to the nodes still alive."""
    assert deployed.run.returncode == 0, deployed.run.stderr[-4000:]
    assert "at" in deployed.killed, "the fifth node never started work on round 1"
    assert not deployed.processes[2 + KILLED].running()
    summary = json.loads((deployed.out / "summary.json").read_text())
    first, second = summary["rounds"]
    dead = [n for n in first["nodes"] if n["node_id"] == deployed.killed_id]
    if dead:  # Flower's own "node unavailable" error reply, once two heartbeats are missed
        assert dead[0]["status"] == "MALFORMED" and "Unavailable" in dead[0]["detail"], dead
        run = summary["chain"]["run_id"]
        assert len(deployed.registry.round_records(run, 1)) == len(first["nodes"])  # its rejection is recorded too
    else:  # or no reply at all before the round's timeout
        assert first["no_reply"] == [deployed.killed_id], first
    assert deployed.killed_id not in [n["node_id"] for n in second["nodes"]] + second["no_reply"]
    assert sum(n["status"] in ("SELECTED", "NOT_SELECTED") for n in first["nodes"]) == HONEST
    rounds = json.loads((deployed.out / "metrics.json").read_text())["rounds"]
    print("round seconds:", [round(r["seconds"]["round"]) for r in rounds])
    assert all(r["seconds"]["round"] < ROUND_TIMEOUT + 30 for r in rounds)  # no round stuck past its timeout
    assert summary["chain"]["pending_operations"] == 0


def test_superlink_refuses_unpinned_app(deployed, tmp_path):
    """A run whose bundle the aggregator did not pin fails before any of its code runs on the aggregator."""
    from flwr.cli.build import build_fab_from_files

    marker = tmp_path / "evil-ran"
    pyproject = (
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "zk0"\nversion = "0.1.0"\ndependencies = []\n\n'
        '[tool.flwr.app]\npublisher = "zk0"\n\n'
        '[tool.flwr.app.components]\nserverapp = "evil:app"\nclientapp = "evil:app"\n\n'
        '[tool.flwr.app.config]\nrounds = 1\n'
    )
    evil, _ = build_fab_from_files({"pyproject.toml": pyproject.encode(),
                                    "evil.py": f"open({str(marker)!r}, 'w').write('ran')\n".encode()})
    address = deployed.state["superlink"]
    run_id = submit_run(address, evil, {}, insecure=True)
    result = follow_run(address, run_id, insecure=True, timeout=180)
    assert result.status == "failed", result
    assert f"refused app bundle sha256 {bundle_hash(evil)}" in "".join(result.log_lines)
    assert not marker.exists()
    assert not list((deployed.work / "flwr-aggregator").glob(f"apps/*{bundle_hash(evil)[:8]}*"))


def test_status_views(deployed):
    """``zk0agg status`` sees the SuperLink, the run and its round, the nodes, the journal; ``zk0node status`` sees
    the SuperNode with its pins, and says when a node's SuperNode is gone."""
    honest = addresses(deployed.wallets[:1])[0]
    during, after = deployed.status["during"], deployed.status["after"]
    agg = during["aggregator"]
    assert agg.returncode == 0, agg.stdout + agg.stderr
    assert f"superlink {deployed.state['superlink']}: up" in agg.stdout
    assert re.search(r"run \d+: running, round 2 of 2, chain operations pending \d+", agg.stdout), agg.stdout
    online = int(re.search(r"nodes +(\d+) connected", agg.stdout).group(1))
    assert HONEST <= online <= KILLED + 1, agg.stdout
    assert "chain     up at" in agg.stdout and deployed.registry.address in agg.stdout
    assert "in the ServerApp process" in agg.stdout  # no verifier service in this deployment
    agg = after["aggregator"]
    assert agg.returncode == 0 and re.search(r"run \d+: finished:completed, 2 of 2 round\(s\) done, chain "
                                             r"operations pending 0", agg.stdout), agg.stdout
    assert "superlink.log" in agg.stdout and "zk0agg-start.log" in agg.stdout
    view = during["node"]
    assert view.returncode == 0, view.stdout + view.stderr
    assert "SuperNode UP" in view.stdout and "(reachable" in view.stdout and "listening" in view.stdout
    assert honest in view.stdout and deployed.digest in view.stdout and "local:" in view.stdout
    killed = after["node"]
    assert killed.returncode == 1 and "NOT RUNNING" in killed.stdout and "nothing runs" in killed.stdout
    assert (deployed.work / "node0" / "zk0node.log").read_text().count("Start `flwr-clientapp` process") >= 2
    assert "round 2" in (deployed.out / "zk0agg-run.log").read_text()


def test_each_node_learns_its_outcome_of_every_round(deployed):
    """Issue 33: a node operator's zk0node.log had timings, never what became of a reply. Now one line per round
    (round 1 told in round 2's train message, round 2 in the run's closing message), the same as summary.json and
    the chain; and the log reads as text: Flower's lines once each (not twice), without ANSI colour codes."""
    summary = json.loads((deployed.out / "summary.json").read_text())
    run = summary["chain"]["run_id"]
    node_log = (deployed.work / "node0" / "zk0node.log").read_text()
    assert "\x1b[" not in node_log
    assert node_log.count("zk0 train message, round 1:") == 1, node_log[-3000:]
    address = addresses(deployed.wallets[:1])[0]
    lines = re.findall(r"zk0 outcome, (round (\d+): .*)", node_log)
    assert [int(r) for _, r in lines] == [1, 2], node_log[-3000:]
    for (line, round_), entry in zip(lines, summary["rounds"], strict=True):
        mine = next(n for n in entry["nodes"] if n["claimed_address"] == address)
        assert line.startswith(f"round {round_}: {mine['status']}"), line
        assert "not scored" in line if mine["score"] is None else f"score {mine['score']:+.4f}" in line, line
        assert line.endswith(f"tx {mine['tx_hash']}"), line
        record = deployed.registry.get_record(run, int(round_), address)
        reward = deployed.registry.reward_of(record)  # nothing claimed yet: what the round paid this wallet
        assert (f"reward {reward / 10**18:,.4f} ZK0" if reward else "no reward") in line, line
