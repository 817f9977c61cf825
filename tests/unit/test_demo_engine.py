"""The demo keeps ``run_simulation`` on purpose (aggregator.tools.demo._run_simulation_engine says why) and drops only
Flower's deprecation notice of it."""

from __future__ import annotations

import inspect
import logging

from flwr.simulation import run_simulation
from flwr.supercore.logger import warn_deprecated_feature

from aggregator.tools.demo import run_simulation_kept

NOTICE = "The `run_simulation` function is deprecated"


def test_only_the_run_simulation_notice_is_dropped():
    assert NOTICE in inspect.getsource(run_simulation)  # the filter matches the text Flower logs
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.addHandler(handler)
    try:
        with run_simulation_kept():
            warn_deprecated_feature(NOTICE + " and will be removed in a future version of Flower.")
            warn_deprecated_feature("Passing `enable_tf_gpu_growth=True` is deprecated.")
        warn_deprecated_feature(NOTICE + " (outside the demo's call)")
    finally:
        flwr_logger.removeHandler(handler)
    assert len(seen) == 2
    assert "enable_tf_gpu_growth" in seen[0] and "outside the demo's call" in seen[1]


def test_rays_gpu_notice_is_dropped_and_other_warnings_still_show():
    """Issue 33: Ray's FutureWarning about accelerator env vars reached the demo's console; nothing a user can act
    on (the demo's nodes ask Ray for no GPU and train on the CPU)."""
    import warnings

    from aggregator.tools.demo import RAY_GPU_NOTICE

    ray_text = ("Tip: In future versions of Ray, Ray will no longer override accelerator visible devices env var if "
                "num_gpus=0 or num_gpus=None (default). To enable this behavior and turn off this error message, set "
                "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0")
    import ray._private.worker

    source = inspect.getsource(ray._private.worker)  # the text Ray warns with (its first line of source)
    assert "Tip: In future versions of Ray, Ray will no longer override accelerator " in source
    assert ray_text.startswith(RAY_GPU_NOTICE)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with run_simulation_kept():
            warnings.warn(ray_text, FutureWarning, stacklevel=1)
            warnings.warn("another future change", FutureWarning, stacklevel=1)
        warnings.warn(ray_text, FutureWarning, stacklevel=1)  # outside the demo's call
    assert [str(w.message)[:20] for w in seen] == ["another future chang", ray_text[:20]]


def test_the_closing_line_is_a_whole_sentence_and_names_what_proof_sizes_count():
    """Issue 33: the demo ended "…the verified federation 10-25 % after 9,600" (steps of what?), and printed "proofs
    of 4320 bytes" at registration against summary.json's proof_bytes 9139 with no word on what each counts."""
    from aggregator.config import FederationConfig
    from aggregator.tools.demo import proof_sizes, success_note

    note = success_note(FederationConfig(model="learn", sim_task="reach"), 0.5, 4, 180, floor=0.25)
    assert note.startswith("closed-loop success 50% (95 % interval 15%-85% over 4 held-out episodes, untrained 25% on "
                           "the same seeds) after 180 optimizer steps; the benchmark"), note
    assert note.endswith('the verified federation of 4 non-IID nodes 0 % after 9,600 steps (7 %, 3-14 %, with drift '
                         'correction over 48 rounds: docs/fed-vs-central.md, "Where it stands").')
    assert "scripted expert 100 %" in note and "66 % (56-75 %) after 50,000" in note
    assert success_note(FederationConfig(model="tiny", sim_task="reach"), 0.0, 1, 9).endswith("model and task.")
    sizes = proof_sizes(4320)
    assert sizes.startswith("EVM proofs of 4320 bytes") and "summary.json's proof_bytes" in sizes
