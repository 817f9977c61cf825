"""LocalChain: anvil starts, stops by PID, and comes back with the same state after a stop or a crash."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from eth_account import Account

from contracts import ChainStartError, ChainUnavailable, LocalChain, Registry, ToolNotFound, connect

pytestmark = pytest.mark.integration
RUN = "0x" + "a1" * 32


def deploy_with_one_round(chain: LocalChain) -> Registry:
    keys = chain.private_keys
    registry = Registry.deploy(connect(chain.rpc_url), keys[0], Account.from_key(keys[0]).address)
    registry.open_round(RUN, 1, "0x" + "11" * 32, "0x" + "cc" * 32)
    return registry


def test_state_survives_a_stop_and_a_crash(tmp_path):
    chain = LocalChain(state_path=tmp_path / "state.json")
    with chain:
        address = deploy_with_one_round(chain).address
        port, pid = chain.port, chain.pid
    assert not chain.running and (tmp_path / "state.json").exists()

    with chain:  # same port, same state: the aggregator's rpc_url and registry address still work
        assert chain.port == port and chain.pid != pid
        registry = Registry.at(connect(chain.rpc_url), address, chain.private_keys[0])
        assert registry.round_info(RUN, 1).state == "open"
        registry.close_round(RUN, 1, "0x" + "99" * 32)
        time.sleep(chain.state_interval + 1.0)  # let the periodic dump catch the close
        chain.kill()  # a crash: no dump on exit
        with pytest.raises(ChainUnavailable):
            registry.round_info(RUN, 1)
        chain.start()
        assert Registry.at(connect(chain.rpc_url), address).round_info(RUN, 1).state == "closed"


def test_missing_anvil_says_how_to_install(tmp_path, monkeypatch):
    """A machine without anvil: this one has it, so the npm folders it is looked up in are pointed at an empty
    folder (the one patch here; a fault that cannot be produced for real on a machine set up for the suite)."""
    with pytest.raises((ChainStartError, ToolNotFound), match="make setup"):
        LocalChain(anvil_path=tmp_path / "anvil").start()
    monkeypatch.setattr("contracts.npm.node_modules_dirs", lambda: [tmp_path])
    with pytest.raises(ToolNotFound, match="anvil is not installed.*make setup"):
        LocalChain().start()


def test_unreachable_chain_is_reported_as_unavailable():
    with LocalChain() as chain:
        url = chain.rpc_url
    with pytest.raises(ChainUnavailable, match="no Ethereum node answers"):
        connect(url)


def test_chain_up_runs_until_interrupted(tmp_path):
    """``zk0agg chain up`` until Ctrl-C, with the dev keys written where the operator guide's commands read them,
    and ``zk0agg chain fund`` giving a fresh wallet ETH on it (what a new node needs to stake)."""
    from aggregator.cli import main as zk0agg

    process = subprocess.Popen(
        [sys.executable, "-m", "contracts.local_chain", "--port", "0", "--keys-dir", str(tmp_path)],
        stderr=subprocess.PIPE, text=True,
        # Ctrl-C as in a terminal: a test run started in the background (nohup, CI) ignores SIGINT, and a child
        # inherits that, so Python would never raise KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "Ctrl-C to stop" in line:
            break
    url = next(line.split()[3] for line in lines if line.startswith("local chain at"))
    w3 = connect(url)
    assert w3.eth.chain_id == 31337
    owner = (tmp_path / "owner.key").read_text().strip()
    assert Account.from_key(owner).address == w3.eth.accounts[0]
    assert (tmp_path / "owner.key").stat().st_mode & 0o077 == 0  # the owner's alone
    fresh = Account.create().address
    assert zk0agg(["chain", "fund", fresh, "--eth", "2.5", "--rpc", url]) == 0
    assert w3.eth.get_balance(fresh) == 25 * 10**17
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 0  # a loaded machine can take its time
    with pytest.raises(ChainUnavailable):
        connect(url)
