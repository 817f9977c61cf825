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
