"""A local development chain: anvil from the repo's node_modules on a free loopback port.

Used by `zk0agg chain up`, the demo and the integration tests. With `state_path` the chain survives a
stop (or a crash: the state is also dumped every `state_interval` seconds) and starts again where it was.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

from contracts.npm import ANVIL, find_npm_tool

log = logging.getLogger(__name__)


class ChainStartError(RuntimeError):
    """anvil did not start or did not answer in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may still take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def rpc_request(url: str, method: str, params: list | None = None, timeout: float = 2.0) -> object:
    """One JSON-RPC call with the standard library (no web3 needed to probe a node)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())["result"]


@dataclass
class LocalChain:
    """An anvil process. Use as a context manager, or call start() and stop().

    Parameters
    ----------
    port : loopback port; None picks a free one (kept across restarts).
    state_path : file the chain's state is loaded from (if it exists) and dumped to (on stop and every
        `state_interval` seconds), so a stopped or killed chain can start again with the same state.
    """

    port: int | None = None
    host: str = "127.0.0.1"
    chain_id: int = 31337
    accounts: int = 10
    state_path: Path | None = None
    state_interval: int = 1
    block_time: float | None = None  # None: mine a block per transaction
    startup_timeout: float = 20.0
    anvil_path: Path | None = None
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _private_keys: list[str] = field(default_factory=list, init=False, repr=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.chain_id <= 0 or self.accounts <= 0 or self.state_interval <= 0:
            raise ValueError("chain_id, accounts and state_interval must be positive")
        if self.state_path is not None:
            self.state_path = Path(self.state_path)

    # ------------------------------------------------------------------ properties
    @property
    def rpc_url(self) -> str:
        if self.port is None:
            raise ChainStartError("the chain has no port yet: start it first")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def private_keys(self) -> list[str]:
        """The funded dev accounts' keys (anvil's public test mnemonic: never use them on a real chain)."""
        return list(self._private_keys)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> LocalChain:
        if self.running:
            return self
        anvil = Path(self.anvil_path) if self.anvil_path else find_npm_tool(ANVIL)
        if not anvil.exists():
            raise ChainStartError(f"anvil not found at {anvil}: run `make setup`")
        attempts = 1 if self.port is not None else 3  # a free port can be taken before anvil binds it
        for attempt in range(attempts):
            port = self.port or free_port(self.host)
            try:
                self._launch(anvil, port)
                self.port = port
                return self
            except ChainStartError:
                if attempt == attempts - 1:
                    raise
                log.warning("anvil did not start on port %d, trying another", port)
        raise AssertionError("unreachable")

    def _launch(self, anvil: Path, port: int) -> None:
        self._cleanup()
        self._workdir = workdir = Path(tempfile.mkdtemp(prefix="zk0-anvil-"))
        config_out, stderr_path = workdir / "config.json", workdir / "stderr.log"
        cmd = [
            str(anvil), "--host", self.host, "--port", str(port), "--silent",
            "--chain-id", str(self.chain_id), "--accounts", str(self.accounts),
            "--config-out", str(config_out),
        ]  # fmt: skip
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--state", str(self.state_path), "--state-interval", str(self.state_interval)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        with open(stderr_path, "wb") as stderr:
            # a session of its own: a Ctrl-C of the terminal reaches the program that runs it, which sends what it
            # must to the chain before it stops anvil (LocalChain.stop)
            self._process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        url = f"http://{self.host}:{port}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                tail = stderr_path.read_text(errors="replace").strip()[-500:]
                raise ChainStartError(f"anvil exited at start on port {port}: {tail or 'no output'}")
            try:
                if int(rpc_request(url, "eth_chainId", timeout=0.5), 16) == self.chain_id and config_out.exists():
                    self._private_keys = json.loads(config_out.read_text())["private_keys"]
                    log.info("anvil (pid %d) ready at %s, chain id %d", self._process.pid, url, self.chain_id)
                    return
            except (OSError, ValueError, KeyError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        self.stop()
        raise ChainStartError(f"anvil did not answer at {url} within {self.startup_timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop anvil gracefully (SIGTERM: it dumps its state first), by PID; SIGKILL if it hangs."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        log.info("anvil (pid %d) stopped", self._process.pid)
        self._process = None
        self._cleanup()

    def kill(self) -> None:
        """Crash anvil (SIGKILL): what survives is the last periodic state dump. For fault tests."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> LocalChain:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_key(path: Path, key: str) -> None:
    """A key file only its owner can read (written whole, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(key + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def fund_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zk0agg chain fund", description=fund_main.__doc__.split("`: ")[1])
    parser.add_argument("address", help="the wallet to fund (zk0node wallet show prints it)")
    parser.add_argument("--eth", type=float, default=10.0, help="the balance it gets, in ETH (default 10)")
    parser.add_argument("--rpc", default="http://127.0.0.1:8545", help="the chain (default http://127.0.0.1:8545)")
    return parser


def up_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zk0agg chain up", description="Run a local anvil chain.")
    parser.add_argument("--port", type=int, default=8545, help="loopback port (default 8545; 0 = any free port)")
    parser.add_argument("--state", type=Path, default=None, help="load the chain from FILE and save it back there")
    parser.add_argument("--chain-id", type=int, default=31337)
    parser.add_argument("--keys-dir", type=Path, metavar="DIR",
                        help="also write the first two dev accounts' keys to DIR/owner.key and DIR/aggregator.key "
                        "(mode 0600), for zk0agg deploy-registry and start on this chain")
    return parser


def fund_main(argv: list[str] | None = None) -> int:
    """`zk0agg chain fund ADDRESS`: give an address ETH on a development chain (anvil's `anvil_setBalance`), so a
    fresh node wallet can stake and pay gas; a real chain refuses it (fund the address with a transfer there)."""
    from eth_utils import is_address, to_checksum_address

    args = fund_parser().parse_args(argv)
    if not is_address(args.address) or not 0 <= args.eth < 10**9:
        print(f"zk0agg chain fund: error: give a 0x address and --eth from 0 to 1e9 (got {args.address!r}, "
              f"{args.eth:g})", file=sys.stderr)
        return 2
    address = to_checksum_address(args.address)
    try:
        rpc_request(args.rpc, "anvil_setBalance", [address, hex(int(args.eth * 10**18))], timeout=10)
    except (OSError, urllib.error.URLError) as err:
        print(f"zk0agg chain fund: error: no chain answers at {args.rpc} ({err})", file=sys.stderr)
        return 2
    except KeyError:  # an "error" answer: the method does not exist there
        print(f"zk0agg chain fund: error: {args.rpc} is not a development chain (anvil): send the address ETH "
              "with a transfer instead", file=sys.stderr)
        return 2
    print(f"{address} now holds {args.eth:g} ETH on the development chain at {args.rpc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`zk0agg chain up [--port N] [--state FILE]`: run a local chain until Ctrl-C."""
    args = up_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chain = LocalChain(port=args.port or None, state_path=args.state, chain_id=args.chain_id)
    try:
        chain.start()
    except (ChainStartError, RuntimeError) as err:
        log.error("%s", err)
        return 1
    lines = [f"local chain at {chain.rpc_url} (chain id {chain.chain_id}, anvil pid {chain.pid})"]
    if args.state:
        lines.append(f"state: {args.state} (saved on exit and every {chain.state_interval} s)")
    lines.append("dev accounts (public test keys, never use them on a real chain):")
    lines += [f"  {Account.from_key(key).address}  {key}" for key in chain.private_keys[:4]]
    if args.keys_dir:
        for name, key in zip(("owner.key", "aggregator.key"), chain.private_keys[:2], strict=True):
            write_key(args.keys_dir / name, key)
        lines.append(f"keys: {args.keys_dir / 'owner.key'} (account 0), {args.keys_dir / 'aggregator.key'} "
                     "(account 1): the same public test keys, for this dev chain only")
    lines.append("Ctrl-C to stop")
    log.info("\n".join(lines))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill PID` stops anvil too, like Ctrl-C
    try:
        while chain.running:
            time.sleep(0.5)
        log.error("anvil exited on its own")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        chain.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
