"""Logging for the CLIs: our own INFO lines, the libraries' noise only when asked for."""

from __future__ import annotations

import logging

# Loggers that are loud at INFO/WARNING for things a user cannot act on (torchcodec's FFmpeg probe: LeRobot falls
# back to PyAV; Flower's per-round banners duplicate our round table).
_QUIET = {"lerobot.utils.import_utils": logging.ERROR, "flwr": logging.WARNING, "httpx": logging.WARNING,
          "ezkl": logging.ERROR}


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if not verbose:
        for name, level in _QUIET.items():
            logging.getLogger(name).setLevel(level)
        # Flower resets its logger's level when a run starts; a filter stays.
        logging.getLogger("flwr").addFilter(_warnings_only)
        logging.getLogger("flwr").propagate = False
        try:  # FFmpeg's encoders (rollout videos) print statistics to stderr unless told not to
            import av

            av.logging.set_level(av.logging.ERROR)
        except ImportError:
            pass
    else:
        logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
