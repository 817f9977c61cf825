"""The app guard: Flower's ``flwr-clientapp`` / ``flwr-serverapp``, refusing every app bundle not pinned here.

In Flower's deployment engine the app's code travels with each run in an app bundle (FAB): the SuperLink runs the
bundle's ServerApp, and every SuperNode runs the bundle's ClientApp on its private data. Both start one process per
task through ``flower-superexec``, which finds ``flwr-clientapp`` / ``flwr-serverapp`` on ``PATH`` and passes on its
environment. ``zk0node start`` and ``zk0agg start`` put a launcher of this script first on that ``PATH``. Before
Flower installs and imports a bundle, the guard hashes the bundle's bytes (sha256, Flower's own FAB hash) and
compares it with the hashes the operator pinned (``--app-hash``, passed as ``ZK0_APP_HASHES``). On a mismatch the
bundle is neither unpacked nor imported: Flower reports the task as failed (a node replies to the aggregator with
an error naming the hash) and the operator's log says why.

Flower then loads the app not from those bytes but from the folder named by the fab id, version and hash the
SuperLink *reports* (``get_project_dir``): a report naming an older bundle already installed under the node's Flower
home would run that one. So the guard also refuses a task whose reported hash is not the sha256 of the bundle it
carries (``check_reported_hash``): what is checked is what is loaded.

Why a node needs it: a node keeps its data private, so it must not run code it has not reviewed. Why the
aggregator needs it: in flwr 1.41 the SuperLink's one port also serves the Control API, which accepts runs from
anyone who can reach it; the ServerApp process holds the aggregator's chain key.

Flower's own ``--trusted-entities`` does not serve here: in flwr 1.41 it accepts only bundles the Flower Hub has
signed (``valid_license``) and refuses every bundle submitted directly to a SuperLink.

This file runs as a script (``python -P app_guard.py clientapp|serverapp ARGS``) and imports only the standard
library and Flower, so none of zk0's own modules are loaded before the check: the app that then runs is the
pinned bundle, whole.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import sys

HASHES_ENV = "ZK0_APP_HASHES"  # comma-separated sha256 hex digests of the app bundles this machine runs

log = logging.getLogger("zk0.app_guard")


class UntrustedApp(RuntimeError):
    """A run brought an app bundle whose hash the operator has not pinned."""


def pinned_hashes() -> set[str]:
    """The operator's pinned bundle hashes; empty means nothing is trusted (fail closed)."""
    return {h.strip().lower().removeprefix("0x") for h in os.environ.get(HASHES_ENV, "").split(",") if h.strip()}


def check_bundle(fab_content: bytes, pinned: set[str]) -> str:
    """The bundle's sha256 if pinned; ``UntrustedApp`` otherwise."""
    digest = hashlib.sha256(fab_content).hexdigest()
    if digest not in pinned:
        raise UntrustedApp(f"refused app bundle sha256 {digest}: it is not the app pinned with --app-hash "
                           f"({', '.join(sorted(pinned)) or 'none pinned'})")
    return digest


def check_reported_hash(fab):
    """``fab`` (Flower's ``Fab``) if the hash the SuperLink reports for it is its content's sha256; Flower loads the
    app from the folder of the reported hash, so any other value could name another installed bundle."""
    digest = hashlib.sha256(fab.content).hexdigest()
    if str(fab.hash_str).strip().lower() != digest:
        raise UntrustedApp(f"refused app bundle: the task reports hash {str(fab.hash_str)[:80]!r} for a bundle whose "
                           f"sha256 is {digest} (Flower would load the app installed under the reported hash)")
    return fab


def guard_reported_hash(fab_from_proto):
    """Wrap Flower's ``fab_from_proto`` (how a runtime receives a task's bundle) with ``check_reported_hash``."""

    def fab_from_proto_checked(*args, **kwargs):
        try:
            return check_reported_hash(fab_from_proto(*args, **kwargs))
        except UntrustedApp as err:
            print(f"zk0 app guard: {err}", file=sys.stderr, flush=True)
            raise

    return fab_from_proto_checked


def guard(install):
    """Wrap Flower's ``install_from_fab`` so that the check runs before anything of the bundle is unpacked."""

    def install_checked(fab_file, *args, **kwargs):
        if not isinstance(fab_file, bytes):
            raise UntrustedApp("refused an app bundle given as a path: the guard checks bundle bytes only")
        try:
            digest = check_bundle(fab_file, pinned_hashes())
        except UntrustedApp as err:
            print(f"zk0 app guard: {err}", file=sys.stderr, flush=True)
            raise
        log.info("app bundle %s is pinned: running it", digest)
        return install(fab_file, *args, **kwargs)

    return install_checked


# role -> (the module whose ``install_from_fab`` installs the bundle, Flower's entry point)
ROLES = {
    "clientapp": ("flwr.supernode.runtime.run_clientapp", "flwr.supernode.cli.flwr_clientapp:flwr_clientapp"),
    "serverapp": ("flwr.superlink.runtime.run_serverapp", "flwr.superlink.cli.flwr_serverapp:flwr_serverapp"),
}


def protect(role: str):
    """Patch the runtime of ``role``: the bundle it receives must report its own hash and be pinned."""
    runtime = importlib.import_module(ROLES[role][0])  # the module: its package re-exports a function of that name
    runtime.install_from_fab = guard(runtime.install_from_fab)
    runtime.fab_from_proto = guard_reported_hash(runtime.fab_from_proto)
    return runtime


def main() -> None:
    role = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if role not in ROLES:
        sys.exit("usage: app_guard.py clientapp|serverapp [flwr-clientapp / flwr-serverapp arguments]")
    protect(role)
    module, _, function = ROLES[role][1].partition(":")
    getattr(importlib.import_module(module), function)()


if __name__ == "__main__":
    main()
