"""The statement's EZKL circuit: settings, compiled circuit and keys, built once and cached by content.

Who needs what (keys are large at real size: the pk is ~0.4 GB at m=32, H=720):

- the aggregator builds the circuit (``build_circuit``) and publishes ``statement.onnx`` + ``settings.json``
  (the *shared files*) and the SRS's sha256; its circuit id goes on chain with each round;
- a node rebuilds the same circuit from the shared files and the same SRS (``circuit_from_files``): compile and
  setup are deterministic, so it gets the same vk and its own pk;
- a verifier needs only ``statement.onnx`` + ``settings.json`` + ``vk.key`` (the *verifier files*, a few hundred
  KB) and the SRS: ``prover.verify.load_verifier``.

circuit_id = "0x" + sha256(ONNX bytes ‖ settings bytes ‖ SRS sha256): two parties with the same id run the same
circuit on the same SRS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import ezkl
import numpy as np

from prover.build_lock import building
from prover.errors import CircuitFilesError, CircuitMismatchError, SRSError
from prover.ezkl_process import call as ezkl_call
from prover.hashing import file_sha256
from prover.srs import SRS, dev_srs
from prover.statement import INPUT_NAMES, SliceShape, export_onnx

log = logging.getLogger(__name__)

ONNX_FILE, SETTINGS_FILE, COMPILED_FILE = "statement.onnx", "settings.json", "circuit.ezkl"
VK_FILE, PK_FILE, META_FILE = "vk.key", "pk.key", "circuit.json"
MAX_INNER_COLS = 8
SHARED_FILES = (ONNX_FILE, SETTINGS_FILE)
VERIFIER_FILES = (ONNX_FILE, SETTINGS_FILE, VK_FILE, META_FILE)


# EZKL computes fixed-point values before a rescale in 64-bit integers: a value rescaled must stay below 2^60
# (measured on the tiny slice: a sum of squares of 2^60.4 at scale 48 proved, 2^60.8 did not).
_RESCALE_LIMIT = 2**60


@dataclass(frozen=True)
class CircuitConfig:
    """EZKL settings of the circuit; the defaults are the measured choice (docs/benchmarks.md, ## Prover).

    input_scale
        Fixed-point bits of every input: v ↦ round(v·2^scale). 12 gives a resolution of 2.4e-4: a change of one
        step in any weight changes the commitment. The products X̃·Pᵀ and the residuals are exact at 2·scale, the
        sums of their squares at 4·scale; only the two sums are rounded, once, to the outputs' scale 2·scale (24:
        the registry reads losses at scales ≤ 29). Why not 16: the sums at 4·scale must stay below 2^60 (EZKL's
        64-bit rescale), which at scale 16 holds no loss at all; and rescaling every residual instead (scale 16,
        the previous layout) costs ~35 % more rows, hence a third column at m = 32 and ~2.2 KB more proof.
    decomp_base, decomp_legs
        Range checks decompose values in ``legs`` digits of ``base`` (a table of ``base`` rows). The only values
        range-checked are the two sums of squares, before their rescale: they must stay below
        min(base^legs, 2^60) / 2^(4·scale), which bounds each loss (``loss_bound``; 21 at m = 32). 4096⁵ = 2^60
        reaches EZKL's limit with a 2^12-row table, so the table never decides the circuit's size.
    num_inner_cols
        Cells per advice row: more columns, fewer rows. ``None`` (default) picks the fewest columns whose circuit
        fits 2^max_logrows rows: every column adds commitments and openings to the proof (~2.2 KB and ~0.34 M gas
        on chain) while every extra logrow doubles proving time and memory (measured: docs/benchmarks.md).
    max_logrows
        See ``num_inner_cols``.
    range_check_inputs
        EZKL's range checks on the inputs and outputs. Off: they cost 6x the rows of the whole statement at real
        size, and buy nothing here — the weights are bound to the verifier's own quantized values by their
        commitments, and X_g, X_n, Y are the node's free choice anyway (docs/trust-model.md).
    calibration_seed
        Seed of the synthetic calibration data used when no slice is given.
    """

    input_scale: int = 12
    decomp_base: int = 4096
    decomp_legs: int = 5
    num_inner_cols: int | None = None
    max_logrows: int = 15
    range_check_inputs: bool = False
    calibration_seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.input_scale <= 14:
            raise ValueError(f"input_scale must be in [1, 14] (outputs come at twice it, the registry takes ≤ 29), "
                             f"got {self.input_scale}")  # fmt: skip
        if self.decomp_base < 2 or self.decomp_base & (self.decomp_base - 1):
            raise ValueError(f"decomp_base must be a power of two ≥ 2, got {self.decomp_base}")
        if not 1 <= self.decomp_legs <= 8:
            raise ValueError(f"decomp_legs must be in [1, 8], got {self.decomp_legs}")
        if self.num_inner_cols is not None and not 1 <= self.num_inner_cols <= MAX_INNER_COLS:
            raise ValueError(f"num_inner_cols must be None or in [1, {MAX_INNER_COLS}], got {self.num_inner_cols}")
        if not 1 <= self.max_logrows <= 26:
            raise ValueError(f"max_logrows must be in [1, 26], got {self.max_logrows}")

    def run_args(self, num_inner_cols: int | None = None) -> ezkl.PyRunArgs:
        args = ezkl.PyRunArgs()
        args.input_visibility = "polycommit"  # KZG commitments: ~free in rows, recomputable by the verifier
        args.output_visibility = "public"  # loss_before, loss_after
        args.param_visibility = "fixed"  # the graph has no parameters, only constants
        args.input_scale = args.param_scale = self.input_scale
        # Values may grow to twice the input scale before EZKL rescales them: the products and residuals stay
        # exact, and only the squares' sums are rescaled (two scalars instead of every residual).
        args.scale_rebase_multiplier = 2
        args.decomp_base = self.decomp_base
        args.decomp_legs = self.decomp_legs
        args.num_inner_cols = num_inner_cols or self.num_inner_cols or 1
        args.ignore_range_check_inputs_outputs = not self.range_check_inputs
        return args

    def loss_bound(self, shape: SliceShape) -> float:
        """Largest loss the circuit can hold for ``shape``."""
        return loss_bound(shape, self.input_scale, self.decomp_base, self.decomp_legs)


def loss_bound(shape: SliceShape, input_scale: int, decomp_base: int, decomp_legs: int) -> float:
    """Largest loss a circuit can hold: the sum of the m·A squared residuals, at 4·input_scale, is range-checked
    in ``decomp_legs`` digits of ``decomp_base`` before its one rescale, which EZKL computes in 64-bit integers."""
    return min(decomp_base**decomp_legs, _RESCALE_LIMIT) / 2.0 ** (4 * input_scale) / (shape.rows * shape.actions)


@dataclass(frozen=True)
class Circuit:
    """A built circuit: its files, its SRS and its id. Everything needed to prove (pk) and to verify (vk)."""

    shape: SliceShape
    dir: Path
    srs: SRS
    circuit_id: str
    logrows: int
    input_scale: int
    output_scales: tuple[int, ...]
    loss_bound: float

    @property
    def onnx(self) -> Path:
        return self.dir / ONNX_FILE

    @property
    def settings(self) -> Path:
        return self.dir / SETTINGS_FILE

    @property
    def compiled(self) -> Path:
        return self.dir / COMPILED_FILE

    @property
    def vk(self) -> Path:
        return self.dir / VK_FILE

    @property
    def pk(self) -> Path:
        return self.dir / PK_FILE

    def shared_files(self) -> dict[str, Path]:
        """What a node needs, besides the SRS, to rebuild this circuit (``circuit_from_files``)."""
        return {name: self.dir / name for name in SHARED_FILES}

    def verifier_files(self) -> dict[str, Path]:
        """What a verifier needs, besides the SRS (``prover.verify.load_verifier``): no pk."""
        return {name: self.dir / name for name in VERIFIER_FILES}

    def export_verifier(self, dest: str | Path) -> Path:
        """Copy the verifier files to ``dest`` (e.g. for a stateless verifier service); return ``dest``."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for name, path in self.verifier_files().items():
            shutil.copyfile(path, dest / name)
        return dest

    def require_id(self, expected: str) -> None:
        """Raise :class:`CircuitMismatchError` unless this circuit's id is ``expected`` (e.g. the round's)."""
        if expected.lower() != self.circuit_id.lower():
            raise CircuitMismatchError(
                f"circuit id mismatch: this circuit is {self.circuit_id}, the round expects {expected}. Rebuild it "
                f"from the aggregator's shared files (statement.onnx, settings.json) and the federation's SRS."
            )


def compute_circuit_id(onnx_bytes: bytes, settings_bytes: bytes, srs_sha256: str) -> str:
    """"0x" + sha256(ONNX bytes ‖ settings bytes ‖ SRS sha256 (32 raw bytes))."""
    srs_digest = bytes.fromhex(srs_sha256.removeprefix("0x"))
    return "0x" + hashlib.sha256(onnx_bytes + settings_bytes + srs_digest).hexdigest()


def write_input_json(arrays: list[np.ndarray], path: Path) -> Path:
    """EZKL's input file: the circuit's inputs flattened, in INPUT_NAMES order."""
    data = {"input_data": [np.asarray(a, dtype=np.float32).reshape(-1).tolist() for a in arrays]}
    path.write_text(json.dumps(data))
    return path


def _normalize_settings(path: Path) -> bytes:
    """Make settings.json canonical, so equal circuits have equal bytes, ids and keys: zero the timestamp EZKL
    writes, and sort the range checks and lookups it lists in hash-set order (their order decides the
    circuit's column layout, hence the vk)."""
    settings = json.loads(path.read_text())
    settings["timestamp"] = 0
    for key in ("required_range_checks", "required_lookups"):
        settings[key] = sorted(settings.get(key) or [], key=lambda item: json.dumps(item, sort_keys=True))
    data = json.dumps(settings, sort_keys=True, indent=1).encode()
    path.write_bytes(data)
    return data


def _make_settings(shape: SliceShape, config: CircuitConfig, calibration: list[np.ndarray], workdir: Path) -> None:
    """Export the ONNX graph, generate and calibrate the settings into ``workdir``.

    With ``num_inner_cols=None`` the settings are made for 1, 2, ... columns until the circuit fits the
    range-check table's size (each try costs a calibration: about a second at real size).
    """
    onnx_path, settings_path = workdir / ONNX_FILE, workdir / SETTINGS_FILE
    export_onnx(shape, onnx_path)
    data_path = write_input_json(calibration, workdir / "calibration.json")
    choices = [config.num_inner_cols] if config.num_inner_cols else range(1, MAX_INNER_COLS + 1)
    for cols in choices:
        args = config.run_args(cols)
        if not ezkl.gen_settings(str(onnx_path), str(settings_path), args):
            raise RuntimeError("ezkl.gen_settings failed")
        try:
            # Only the given scale is tried: calibration picks the fewest rows for it and checks the data fits.
            ezkl_call("calibrate_settings", str(data_path), str(onnx_path), str(settings_path), "resources", 1.0,
                      [config.input_scale], [args.scale_rebase_multiplier], None)  # fmt: skip
        except RuntimeError as err:
            raise ValueError(
                f"calibration failed for {shape.label()} at input_scale={config.input_scale}: the calibration "
                f"values do not fit the range checks (losses up to {config.loss_bound(shape):.3g}); lower "
                f"input_scale ({err})"
            ) from err
        logrows = json.loads(settings_path.read_text())["run_args"]["logrows"]
        log.debug("%s with %d inner columns: logrows %d", shape.label(), cols, logrows)
        if logrows <= config.max_logrows:
            break
    _normalize_settings(settings_path)
    data_path.unlink()


def build_circuit(
    shape: SliceShape,
    srs_or_policy: SRS | Literal["dev"],
    cache_dir: str | Path,
    calibration=None,
    config: CircuitConfig | None = None,
) -> Circuit:
    """Build (or reuse from ``cache_dir``) the circuit of the statement for ``shape``.

    ``srs_or_policy`` is the federation's SRS, or ``"dev"`` for a cached development SRS (tests, demos: see
    ``prover.srs``). ``calibration`` is a representative :class:`prover.capture.Slice`; by default seeded
    synthetic data of realistic scale is used, so that everyone building with the same arguments gets the same
    circuit. Building twice gives the same files, circuit id and vk.
    """
    config = config or CircuitConfig()
    cache_dir = Path(cache_dir)
    if calibration is None:
        from prover.synthetic import synthetic_slice

        calibration = synthetic_slice(shape, config.calibration_seed)
    if calibration.shape != shape:
        raise ValueError(f"the calibration slice is {calibration.shape}, the circuit is for {shape}")
    arrays = list(calibration.inputs())
    spec_dir = cache_dir / "specs" / f"{shape.label()}-{spec_key(shape, config, arrays)[:16]}"
    with building(spec_dir / SETTINGS_FILE, spec_dir.parent) as missing:
        if missing:
            with _staging(cache_dir) as work:
                _make_settings(shape, config, arrays, work)
                _publish(work, spec_dir)
    settings = json.loads((spec_dir / SETTINGS_FILE).read_text())
    logrows = settings["run_args"]["logrows"]
    if srs_or_policy == "dev":
        srs = dev_srs(logrows, cache_dir)
    elif isinstance(srs_or_policy, SRS):
        srs = srs_or_policy
    else:
        raise TypeError(f"srs_or_policy must be an SRS or 'dev', got {srs_or_policy!r}")
    return circuit_from_files(spec_dir / ONNX_FILE, spec_dir / SETTINGS_FILE, srs, cache_dir)


def spec_key(shape: SliceShape, config: CircuitConfig, calibration: list[np.ndarray]) -> str:
    """What the cached settings of ``build_circuit`` are keyed by: everything they depend on — the statement's
    graph itself (a changed statement must never reuse an old one's settings), EZKL's version, the shape, the
    config and the calibration data."""
    with tempfile.TemporaryDirectory() as tmp:
        onnx_bytes = export_onnx(shape, Path(tmp) / ONNX_FILE).read_bytes()
    spec = hashlib.sha256(json.dumps([asdict(shape), asdict(config), ezkl.__version__]).encode() + onnx_bytes)
    for a in calibration:
        spec.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return spec.hexdigest()


def circuit_from_files(onnx_path: str | Path, settings_path: str | Path, srs: SRS, cache_dir: str | Path) -> Circuit:
    """The circuit of given shared files (``statement.onnx``, ``settings.json``) on ``srs``: compile and set up
    into ``cache_dir/circuits/<id>`` unless already there. This is how a node gets its proving key."""
    onnx_bytes, settings_bytes = Path(onnx_path).read_bytes(), Path(settings_path).read_bytes()
    try:
        settings = json.loads(settings_bytes)
        logrows = int(settings["run_args"]["logrows"])
    except (ValueError, KeyError, TypeError) as err:
        raise CircuitFilesError(f"{settings_path} is not an EZKL settings file ({err}): fetch it again") from err
    if srs.logrows != logrows:
        raise SRSError(
            f"the circuit needs an SRS for logrows={logrows}, {srs.path} is for logrows={srs.logrows}: "
            f"use the federation's SRS made for exactly {logrows}"
        )
    circuit_id = compute_circuit_id(onnx_bytes, settings_bytes, srs.sha256)
    out = Path(cache_dir) / "circuits" / circuit_id[2:18]
    with building(out / META_FILE, out.parent) as missing:
        if missing:
            with _staging(Path(cache_dir)) as work:
                (work / ONNX_FILE).write_bytes(onnx_bytes)
                (work / SETTINGS_FILE).write_bytes(settings_bytes)
                _compile_and_setup(work, srs)
                meta = {"circuit_id": circuit_id, "srs_sha256": srs.sha256, "srs_kind": srs.kind,
                        "vk_sha256": file_sha256(work / VK_FILE), "logrows": logrows}  # fmt: skip
                (work / META_FILE).write_text(json.dumps(meta, indent=1))
                _publish(work, out)
    return _open(out, srs, expect_id=circuit_id)


def open_circuit(directory: str | Path, srs: SRS) -> Circuit:
    """A circuit already built in ``directory`` (with its pk), checked against ``srs``."""
    return _open(Path(directory), srs, expect_id=None)


def _open(directory: Path, srs: SRS, expect_id: str | None) -> Circuit:
    for name in (*VERIFIER_FILES, COMPILED_FILE, PK_FILE):
        if not (directory / name).is_file():
            raise CircuitFilesError(f"{directory} lacks {name}: rebuild the circuit (build_circuit)")
    meta = read_meta(directory)
    circuit_id = compute_circuit_id(
        (directory / ONNX_FILE).read_bytes(), (directory / SETTINGS_FILE).read_bytes(), srs.sha256
    )
    if circuit_id != meta["circuit_id"] or (expect_id is not None and circuit_id != expect_id):
        raise CircuitMismatchError(
            f"{directory} holds circuit {meta['circuit_id']}, but its files with SRS {srs.path} give {circuit_id}: "
            f"the files were edited or the SRS is not the one the keys were made with; rebuild the circuit"
        )
    shape = shape_of(directory / ONNX_FILE)
    return Circuit(shape=shape, dir=directory, srs=srs, circuit_id=circuit_id, logrows=meta["logrows"],
                   **scales_of(directory / SETTINGS_FILE, shape))  # fmt: skip


def read_meta(directory: Path) -> dict:
    try:
        meta = json.loads((directory / META_FILE).read_text())
        for key in ("circuit_id", "srs_sha256", "vk_sha256", "logrows"):
            meta[key]  # noqa: B018 (presence check)
    except (OSError, ValueError, KeyError) as err:
        message = f"{directory / META_FILE} is missing or corrupted ({err}): rebuild the circuit"
        raise CircuitFilesError(message) from err
    return meta


def scales_of(settings_path: Path, shape: SliceShape) -> dict:
    """Input scale, output scales and the loss bound of a settings file for a circuit of ``shape``."""
    settings = json.loads(settings_path.read_text())
    run_args = settings["run_args"]
    bound = loss_bound(shape, run_args["input_scale"], run_args["decomp_base"], run_args["decomp_legs"])
    return {"input_scale": run_args["input_scale"], "output_scales": tuple(settings["model_output_scales"]),
            "loss_bound": bound}  # fmt: skip


def shape_of(onnx_path: Path) -> SliceShape:
    """The slice shape of a circuit, read from its ONNX graph's input shapes."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    if set(dims) != set(INPUT_NAMES):
        raise CircuitFilesError(f"{onnx_path} is not the zk0 statement (inputs {sorted(dims)})")
    (actions, _), (rows, hidden_and_one) = dims["P_g"], dims["X_g"]  # X_g enters as [X_g | 1]
    return SliceShape(actions=actions, hidden=hidden_and_one - 1, rows=rows)


def _compile_and_setup(work: Path, srs: SRS) -> None:
    if not ezkl_call("compile_circuit", str(work / ONNX_FILE), str(work / COMPILED_FILE), str(work / SETTINGS_FILE)):
        raise RuntimeError("ezkl.compile_circuit failed")
    log.info("setting up the circuit (logrows from settings, SRS %s): keys are large at real size", srs.path)
    ok = ezkl_call("setup", str(work / COMPILED_FILE), str(work / VK_FILE), str(work / PK_FILE), str(srs.path), None,
                   False)
    if not ok:
        raise RuntimeError("ezkl.setup failed")


class _staging:
    """A scratch folder inside ``cache_dir`` (same file system, so publishing it is an atomic rename)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def __enter__(self) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.cache_dir))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _publish(work: Path, dest: Path) -> None:
    """Move a finished staging folder to ``dest``; if another process got there first, keep theirs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(work, dest)
    except OSError:
        if not dest.is_dir():
            raise
