"""Node wallets: eth-account keystores, passwords from a file / env / prompt, one-line errors."""

from __future__ import annotations

import json
import stat

import pytest
from eth_account import Account

from contracts.wallet import WalletError, load_account, read_address, resolve_password, wallet_new, wallet_show


@pytest.fixture()
def password_file(tmp_path):
    path = tmp_path / "password.txt"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    return path


def test_wallet_new_makes_a_keystore_that_eth_account_opens_with_the_password_only(tmp_path, password_file):
    out = tmp_path / "w" / "wallet.json"
    text = wallet_new(out, password_file)
    address = read_address(out)
    assert address in text and "zk0agg approve" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    keystore = json.loads(out.read_text())
    assert keystore["version"] == 3
    key = Account.decrypt(keystore, "correct horse battery staple")  # eth-account alone, no zk0 code
    assert Account.from_key(key).address == address
    assert load_account(out, "correct horse battery staple").address == address
    assert address in wallet_show(out)

    with pytest.raises(WalletError) as wrong:
        load_account(out, "wrong")
    assert str(wrong.value) == f"wrong password for wallet {out}"
    assert "\n" not in str(wrong.value)

    with pytest.raises(WalletError, match="refusing to overwrite"):
        wallet_new(out, password_file)


def test_missing_or_broken_keystore_gives_one_line_errors(tmp_path):
    with pytest.raises(WalletError, match="no wallet at .*zk0node wallet new"):
        load_account(tmp_path / "missing.json", "x")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WalletError, match="not a keystore"):
        wallet_show(tmp_path / "bad.json")


def test_password_sources(tmp_path, password_file, monkeypatch):
    monkeypatch.setenv("ZK0_WALLET_PASSWORD", "from-env")
    assert resolve_password(password_file) == "correct horse battery staple"  # the file wins, newline stripped
    assert resolve_password() == "from-env"
    monkeypatch.delenv("ZK0_WALLET_PASSWORD")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(WalletError, match="no wallet password"):
        resolve_password()
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(WalletError, match="empty"):
        resolve_password(tmp_path / "empty.txt")
    with pytest.raises(WalletError, match="cannot read password file"):
        resolve_password(tmp_path / "nope.txt")


def _malformed(keystore: dict) -> dict[str, dict]:
    """A valid keystore with one thing broken, each way a file met in the wild can be."""
    def edit(fn) -> dict:
        copy = json.loads(json.dumps(keystore))
        fn(copy)
        return copy

    return {
        "version": edit(lambda k: k.pop("version")),
        "old version": edit(lambda k: k.update(version=1)),
        "address": edit(lambda k: k.update(address="0xnot-an-address")),
        "address type": edit(lambda k: k.update(address=12345)),
        "mac": edit(lambda k: k["crypto"].pop("mac")),
        "ciphertext": edit(lambda k: k["crypto"].update(ciphertext="zz")),
        "kdfparams": edit(lambda k: k["crypto"]["kdfparams"].pop("n")),
        "cipher": edit(lambda k: k["crypto"].update(cipher="des")),
        "crypto": edit(lambda k: k.update(crypto="oops")),
    }


def test_malformed_keystores_give_one_line_errors(tmp_path):
    keystore = Account.encrypt(Account.create().key, "pw", kdf="scrypt", iterations=2)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(keystore))
    assert load_account(good, "pw").address == read_address(good)
    only_decrypting_tells = {"kdfparams"}  # a well-formed field with unusable values
    for what, broken in _malformed(keystore).items():
        path = tmp_path / f"{what.replace(' ', '-')}.json"
        path.write_text(json.dumps(broken))
        calls = [lambda p=path: load_account(p, "pw")]
        if what not in only_decrypting_tells:
            calls.append(lambda p=path: read_address(p))
        for call in calls:
            with pytest.raises(WalletError) as err:
                call()
            assert "\n" not in str(err.value) and str(path) in str(err.value), (what, err.value)


def test_a_keystore_naming_another_address_is_refused_once_decrypted(tmp_path, password_file, monkeypatch):
    """eth-account decrypts a keystore whose clear ``address`` names someone else's address without a word; an
    operator shown that address would approve one this node cannot sign for (issue 34)."""
    keystore = Account.encrypt(Account.create().key, "pw", kdf="scrypt", iterations=2)
    real = Account.from_key(Account.decrypt(keystore, "pw")).address
    other = Account.create().address
    keystore["address"] = other[2:].lower()  # as eth-account writes it: 40 hex digits, no 0x
    path = tmp_path / "altered.json"
    path.write_text(json.dumps(keystore))
    assert read_address(path) == other  # the clear field is all a password-less look sees
    with pytest.raises(WalletError) as err:
        load_account(path, "pw")
    message = str(err.value)
    assert "\n" not in message and str(path) in message and other in message and real in message, message
    assert "restore it from your backup" in message
    with pytest.raises(WalletError, match="names address"):
        wallet_show(path, "pw")
    assert other in wallet_show(path)  # no password: the file's claim, as before (the CLI says it is unchecked)

    keystore.pop("address")  # a keystore without the field: only the key speaks
    path.write_text(json.dumps(keystore))
    assert load_account(path, "pw").address == real
    assert real in wallet_show(path, "pw")


def test_given_password_never_prompts(tmp_path, password_file, monkeypatch):
    from contracts.wallet import given_password

    monkeypatch.delenv("ZK0_WALLET_PASSWORD", raising=False)
    monkeypatch.setattr("getpass.getpass", lambda *_: pytest.fail("prompted"))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert given_password() is None
    assert given_password(password_file) == "correct horse battery staple"
    monkeypatch.setenv("ZK0_WALLET_PASSWORD", "from-env")
    assert given_password() == "from-env"
