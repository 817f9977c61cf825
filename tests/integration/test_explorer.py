"""The contribution explorer in a real browser, after a real verified federation on anvil.

The session's verified run (tests/integration/conftest.py: nine nodes × two rounds, real EZKL proofs and
signatures, five attackers, so every round has rejections; one node signs with a key that is not its wallet,
``bad-signature``). ``zk0agg explorer`` then serves the
registry on a loopback port and headless Chromium loads its pages: what it shows must be what the registry holds.
Screenshots of every page are saved under the test's temporary directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from aggregator.explorer import ExplorerConfig, make_app
from contracts import Registry, Status, connect, load_artifact, read_address
from contracts.local_chain import free_port, rpc_request

# The session's verified run is set up by whichever test needing it runs first: nine nodes with real proofs take
# 10-15 min on a loaded 2-core machine, beyond the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(2400)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium found (Debian: apt-get install "
                                   "chromium; scripts/setup.sh installs it when run as root)")
ROUNDS = 2


@pytest.fixture(scope="module")
def federation(verified_run):
    """The session's verified run (tests/integration/conftest.py) and its registry."""
    out, summary, chain, roles = verified_run
    registry = Registry.at(connect(chain.rpc_url), summary["chain"]["registry"])
    return out, summary, chain, registry, roles


@pytest.fixture(scope="module")
def explorer(federation, tmp_path_factory):
    """``zk0agg explorer`` as an operator runs it, on a free loopback port."""
    out, summary, chain, registry, _ = federation
    port = free_port()
    log = tmp_path_factory.mktemp("explorer-log") / "explorer.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "aggregator.cli", "explorer", "--rpc", chain.rpc_url,
                                    "--registry", registry.address, "--outputs", str(out), "--port", str(port),
                                    "--refresh", "2"], stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # aggregator.cli imports torch: slow on a loaded machine
    while True:
        try:
            if httpx.get(f"{url}/static/explorer.css", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(10)


def browse(url: str, shots: Path | None, name: str = "", wait_ms: int = 0) -> str:
    """The page's DOM after Chromium ran its scripts (for ``wait_ms`` of virtual time: the page's polls run in it);
    a screenshot of it saved as ``shots/name.png``."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1000"]
    if shots is not None:
        shots.mkdir(exist_ok=True)
        subprocess.run([*flags, f"--screenshot={shots / f'{name}.png'}", url], capture_output=True, timeout=60)
        assert (shots / f"{name}.png").stat().st_size > 10_000, f"no screenshot of {url}"
    flags += [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    return subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True).stdout


def rows(dom: str, css_class: str) -> list[str]:
    return re.findall(rf'<tr class="{css_class}"[^>]*>.*?</tr>', dom, flags=re.S)


@needs_browser
def test_explorer_pages_show_what_the_registry_holds(federation, explorer, tmp_path):
    out, summary, _, registry, roles = federation
    wallets = [read_address(out / "wallets" / f"node{i}.json") for i in range(len(roles))]

    home = browse(f"{explorer}/", tmp_path, "federation")
    assert registry.address in home and str(registry.chain_id) in home
    for wallet in wallets:  # every approved wallet, linked to its page
        assert f'href="/wallets/{wallet}"' in home
    assert summary["chain"]["srs_sha256"] in home  # the SRS digest, full value in the title attribute

    rounds = browse(f"{explorer}/rounds", tmp_path, "rounds")
    assert len(rows(rounds, "round")) == ROUNDS
    assert rounds.count("<svg") == 2  # eval loss and success rate charts
    polled = browse(f"{explorer}/rounds", None, wait_ms=5000)  # --refresh 2: the page fetched itself again
    assert re.search(r'data-polled="[1-9]', polled) and len(rows(polled, "round")) == ROUNDS

    run = summary["chain"]["run_id"]
    assert run in home  # the run of the outputs is the one shown
    for rnd in range(1, ROUNDS + 1):
        page = browse(f"{explorer}/rounds/{rnd}", tmp_path, f"round{rnd}")
        records = registry.round_records(run, rnd)
        replies = rows(page, "reply")
        assert len(replies) == len(records) == len(roles)
        rejected = [r for r in replies if 'data-status="REJECTED"' in r]
        chain_rejected = [r for r in records if r.status == Status.REJECTED]
        assert len(rejected) == len(chain_rejected) >= 2  # the forger and the impostor at least
        assert sorted(r.reason.name for r in chain_rejected) == sorted(
            re.search(r'data-reason="(\w+)"', r).group(1) for r in rejected)
        impostor = [r for r in rejected if "BAD_SIGNATURE" in r]
        assert len(impostor) == 1 and "the signature does not verify" in impostor[0] and "claimed" in impostor[0]
        tx_of = {e["args"]["node"]: e["tx_hash"] for e in registry.events("ContributionRecorded")
                 if (e["args"]["runId"], e["args"]["round"]) == (run, rnd)}
        for record in records:  # full hashes on hover: the update hash and the transaction of each record
            if record.signed:
                assert f'title="{record.update_hash}"' in page
            assert f'title="{tx_of[record.node]}"' in page
        assert registry.round_info(run, rnd).global_hash in page

    honest = wallets[0]
    page = browse(f"{explorer}/wallets/{honest}", tmp_path, "wallet")
    history = registry.node_history(honest)
    assert len(rows(page, "reply")) == len(history) == ROUNDS
    for rnd in range(1, ROUNDS + 1):
        assert f'href="/rounds/{rnd}?run={run}"' in page
    attacker = browse(f"{explorer}/wallets/{wallets[roles.index('bad-signature')]}", tmp_path, "wallet-claimed")
    assert "Rejected replies that claimed this wallet" in attacker and attacker.count("BAD_SIGNATURE") >= ROUNDS


@needs_browser
def test_explorer_shows_amounts_rewards_after_a_claim_and_each_wallets_stake(federation, explorer, tmp_path):
    """Amounts in ZK0 and ETH (never ×10¹⁸), a round's rewards still shown after they were claimed, event arguments
    in hex, and the federation's wallets with stake, records, scores, rewards and slashes. The claim is made in an
    anvil snapshot, reverted at the end: the session's other tests see the chain as the run left it."""
    out, summary, chain, registry, roles = federation
    run = summary["chain"]["run_id"]
    wallets = [read_address(out / "wallets" / f"node{i}.json") for i in range(len(roles))]
    rewarded = next(w for w in wallets if registry.pending_rewards(w)[0] > 0)
    forger = wallets[roles.index("forge-proof")]
    earned = {}  # (round) → what the rewarded wallet's record earned, by the contract's formula
    for record in registry.node_history(rewarded, run):
        info = registry.contract.functions.roundInfo(bytes.fromhex(run[2:]), record.round).call()
        if record.status == Status.SELECTED and record.chain[13] > 0:
            earned[record.round] = info[7] * record.chain[13] // info[8]  # emission × weight / weight total
    assert earned
    snapshot = rpc_request(chain.rpc_url, "evm_snapshot")
    try:
        anyone = Registry.at(registry.w3, registry.address, sender_key=chain.private_keys[0])
        anyone.claim(rewarded)  # anyone may claim: the tokens go to the wallet
        assert registry.pending_rewards(rewarded)[0] == 0

        rnd = max(earned)
        page = browse(f"{explorer}/rounds/{rnd}", tmp_path, "round-claimed")
        row = next(r for r in rows(page, "reply") if f'href="/wallets/{rewarded}"' in r)
        amount = f"{earned[rnd] / 10**18:,.4f}".rstrip("0").rstrip(".")
        assert f"{amount} ZK0" in row and "claimed" in row, row  # what the round paid, not the 0 rewardOf gives now
        assert "×10¹⁸" not in page and "ZK0 to share" in page

        home = browse(f"{explorer}/", tmp_path, "federation-wallets")
        table = {re.search(r'data-address="(0x\w+)"', r).group(1): r for r in rows(home, "wallet")}
        assert set(wallets) <= set(table)
        claimed = f"{sum(earned.values()) / 10**18:,.4f}".rstrip("0").rstrip(".")
        assert f"{claimed} ZK0" in table[rewarded] and "1 ETH" in table[rewarded]  # the demo's stake
        stake = registry.stake_of(forger).amount / 10**18
        assert f"{stake:,.4f}".rstrip("0").rstrip(".") + " ETH" in table[forger] and "taken" in table[forger]
        assert "×10¹⁸" not in home and " ETH" in home  # the min stake among the parameters

        wallet = browse(f"{explorer}/wallets/{rewarded}", tmp_path, "wallet-rewards")
        events = wallet[wallet.index("<h2>Events</h2>"):]
        assert "RewardClaimed" in events and f"runIds=<code title=\"[{run}" in events
        assert "b'" not in events and "b&#39;" not in events and "×10¹⁸" not in wallet
        assert f"{claimed} ZK0" in events  # the claim's amount
        assert all("claimed" in r for r in rows(wallet, "reply") if 'data-status="SELECTED"' in r)
    finally:
        assert rpc_request(chain.rpc_url, "evm_revert", [snapshot]) is True
    assert registry.pending_rewards(rewarded)[0] > 0  # the chain as the run left it


def test_explorer_bad_input_is_a_clear_4xx(federation, explorer):
    _, _, chain, registry, _ = federation
    i = next(i for i, c in enumerate(registry.address) if i > 1 and c.isalpha())
    checksum_typo = registry.address[:i] + registry.address[i].swapcase() + registry.address[i + 1:]
    for path, status, words in [("/rounds/99", 404, "never opened"), ("/rounds/abc", 400, "not a round number"),
                                ("/rounds/1?run=0xzz", 400, "not a run id"), ("/rounds/1?run=0xdead", 404, "no run"),
                                ("/rounds/-1", 400, "not a round number"), ("/wallets/0x12", 400, "not an address"),
                                (f"/wallets/{checksum_typo}", 400, "checksum"), ("/nothing/here", 404, "no page")]:
        response = httpx.get(explorer + path, timeout=30)
        assert response.status_code == status, (path, response.text[-500:])
        assert words in response.text and "<html" in response.text, path

    w3 = connect(chain.rpc_url)
    no_code = TestClient(make_app(ExplorerConfig(chain.rpc_url, "0x" + "12" * 20)))
    page = no_code.get("/rounds/1")
    assert page.status_code == 404 and "no contract at" in page.text
    other = load_artifact("VkaStore")  # a contract, but not a registry
    tx = w3.eth.contract(abi=other.abi, bytecode=other.bytecode).constructor([b"\x01" * 32]).transact(
        {"from": w3.eth.accounts[0]})
    not_registry = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    page = TestClient(make_app(ExplorerConfig(chain.rpc_url, not_registry))).get("/")
    assert page.status_code == 404 and "does not answer as a zk0 ContributionRegistry" in page.text


@needs_browser
def test_explorer_says_when_the_chain_is_unreachable(federation, explorer, tmp_path):
    _, _, chain, _, _ = federation
    chain.stop()
    try:
        response = httpx.get(f"{explorer}/rounds/1", timeout=30)
        assert response.status_code == 503
        dom = browse(f"{explorer}/rounds/1", tmp_path, "unreachable")
        assert "Chain unreachable" in dom and chain.rpc_url in dom
    finally:
        chain.start()
    assert httpx.get(f"{explorer}/rounds/1", timeout=30).status_code == 200  # back with the chain
