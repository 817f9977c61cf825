"""A node's wallet: an Ethereum key in an encrypted keystore file (eth-account keystore v3, scrypt).

The key signs the node's contributions (typed_data.sign_contribution); its address is what the aggregator
operator approves in the registry. Passwords come from a file, an environment variable or a prompt, never
from a command-line argument (those show up in `ps` and shell history).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import stat
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

log = logging.getLogger(__name__)

DEFAULT_WALLET = Path("~/.zk0/wallet.json")
PASSWORD_ENV = "ZK0_WALLET_PASSWORD"


class WalletError(RuntimeError):
    """A wallet operation failed for a reason the user can fix (the message says which)."""


def create_keystore(path: str | Path, password: str) -> str:
    """Make a new key, write it encrypted to `path` (mode 0600, never overwriting); return its address."""
    path = Path(path).expanduser()
    if not password:
        raise WalletError("refusing an empty password: the keystore would protect nothing")
    if path.exists():
        raise WalletError(f"{path} already exists: refusing to overwrite a wallet (choose another --out)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    account = Account.create()
    keystore = Account.encrypt(account.key, password)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WalletError(f"{path} already exists: refusing to overwrite a wallet (choose another --out)") from None
    with os.fdopen(fd, "w") as handle:
        json.dump(keystore, handle)
    return account.address


def read_address(path: str | Path) -> str:
    """The address a keystore's file names (stored in clear: no password needed). It is the file's own claim: only
    ``load_account`` (which decrypts the key) shows that the key holds it."""
    keystore = _read_keystore(Path(path).expanduser())
    if "address" not in keystore:
        raise WalletError(f"{path} has no address field: load it with its password instead")
    return to_checksum_address(keystore["address"])


def load_account(path: str | Path, password: str) -> LocalAccount:
    """The account in the keystore at `path`; WalletError on a wrong password or a bad file.

    eth-account does not compare the file's clear ``address`` field with the decrypted key: a file whose field names
    another address would show (``wallet show``) and get approved as an address this node cannot sign for, so a
    mismatch is refused here, where every command that uses the key opens it."""
    path = Path(path).expanduser()
    keystore = _read_keystore(path)
    try:
        key = Account.decrypt(keystore, password)
    except Exception as err:  # noqa: BLE001 - eth-account raises Value/Key/TypeErrors for odd fields
        if "MAC mismatch" in str(err):
            raise WalletError(f"wrong password for wallet {path}") from None
        raise WalletError(f"{path} is not a valid keystore ({type(err).__name__}: {err})") from None
    account = Account.from_key(key)
    if "address" in keystore and to_checksum_address(keystore["address"]) != account.address:
        claimed = to_checksum_address(keystore["address"])
        raise WalletError(f"{path} names address {claimed} but its key is {account.address}: the file was altered; "
                          f"restore it from your backup or make a new wallet (zk0node wallet new), and never have "
                          f"{claimed} approved for this node")
    return account


def resolve_password(
    password_file: str | Path | None = None, env: str = PASSWORD_ENV, prompt: bool = True, confirm: bool = False
) -> str:
    """The wallet password: from `password_file`, else the `env` variable, else a terminal prompt.

    `confirm` asks twice (for a new wallet). WalletError when none of them gives one.
    """
    if password_file is not None:
        path = Path(password_file).expanduser()
        try:
            text = path.read_text()
        except OSError as err:
            raise WalletError(f"cannot read password file {path}: {err.strerror}") from None
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("password file %s is readable by other users: chmod 600 it", path)
        password = text.rstrip("\r\n")
        if not password:
            raise WalletError(f"password file {path} is empty")
        return password
    if os.environ.get(env):
        return os.environ[env]
    if prompt and sys.stdin.isatty():
        password = getpass.getpass("wallet password: ")
        if confirm and getpass.getpass("repeat password: ") != password:
            raise WalletError("the two passwords differ")
        return password
    raise WalletError(f"no wallet password: give --password-file FILE, set {env}, or run in a terminal")


def given_password(password_file: str | Path | None = None, env: str = PASSWORD_ENV) -> str | None:
    """The password if the user gave one (`password_file`, else the `env` variable), None otherwise: for commands
    that work without it and only check more with it (``wallet show``), so they never prompt."""
    if password_file is None and not os.environ.get(env):
        return None
    return resolve_password(password_file, env, prompt=False)


def wallet_new(out: str | Path | None = None, password_file: str | Path | None = None) -> str:
    """`zk0node wallet new`: create a wallet; return what to print."""
    path = Path(out or DEFAULT_WALLET).expanduser()
    if path.exists():  # say so before asking for a password
        raise WalletError(f"{path} already exists: refusing to overwrite a wallet (choose another --out)")
    address = create_keystore(path, resolve_password(password_file, confirm=True))
    return (
        f"created wallet {path}\n"
        f"address {address}\n"
        f"ask the aggregator operator to approve it: zk0agg approve {address}\n"
        f"keep the file and its password safe: losing either loses this identity"
    )


def wallet_show(path: str | Path | None = None, password: str | None = None) -> str:
    """`zk0node wallet show FILE`: the wallet's address; return what to print.

    Without `password` the address is the file's own claim (``read_address``); with it the key is decrypted and
    must hold that address (``load_account``: WalletError otherwise)."""
    path = Path(path or DEFAULT_WALLET).expanduser()
    address = read_address(path) if password is None else load_account(path, password).address
    return f"address {address}\nwallet {path}"


def _read_keystore(path: Path) -> dict:
    if not path.exists():
        raise WalletError(f"no wallet at {path}: create one with `zk0node wallet new --out {path}`")
    try:
        keystore = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WalletError(f"{path} is not a keystore file: {err}") from None
    if not isinstance(keystore, dict) or ("crypto" not in keystore and "Crypto" not in keystore):
        raise WalletError(f"{path} is not a keystore file (no crypto section)")
    check_keystore(keystore, path)
    return keystore


_CRYPTO_FIELDS = ("cipher", "cipherparams", "ciphertext", "kdf", "kdfparams", "mac")


def check_keystore(keystore: dict, path: Path) -> None:
    """An Ethereum keystore v3 (what ``zk0node wallet new`` writes), field by field: a malformed file is a one-line
    WalletError naming what is wrong, never a traceback from deep inside eth-account."""
    bad = f"{path} is not a valid keystore v3"
    if keystore.get("version") != 3:
        raise WalletError(f"{bad}: its version is {keystore.get('version')!r}, expected 3")
    crypto = keystore.get("crypto", keystore.get("Crypto"))
    if not isinstance(crypto, dict):
        raise WalletError(f"{bad}: its crypto section is not an object")
    missing = [name for name in _CRYPTO_FIELDS if name not in crypto]
    if missing:
        raise WalletError(f"{bad}: its crypto section lacks {', '.join(missing)}")
    if crypto["cipher"] != "aes-128-ctr" or crypto["kdf"] not in ("scrypt", "pbkdf2"):
        raise WalletError(f"{bad}: cipher {str(crypto['cipher'])[:40]!r} / kdf {str(crypto['kdf'])[:40]!r}, expected "
                          "aes-128-ctr with scrypt or pbkdf2")
    if not isinstance(crypto["kdfparams"], dict) or not isinstance(crypto["cipherparams"], dict):
        raise WalletError(f"{bad}: kdfparams and cipherparams must be objects")
    for name in ("ciphertext", "mac"):
        if not _is_hex(crypto[name]):
            raise WalletError(f"{bad}: crypto.{name} is not hex")
    if "address" in keystore:
        address = keystore["address"]
        if not isinstance(address, str) or len(address.removeprefix("0x")) != 40 or not _is_hex(address):
            raise WalletError(f"{bad}: its address {str(address)[:60]!r} is not 40 hex digits")


def _is_hex(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        return False
    return True
