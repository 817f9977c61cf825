"""A node's private dataset: URIs, loading with LeRobot's own API, and the checks every dataset must pass.

``hf:<repo_id>`` loads a LeRobot dataset from the Hugging Face Hub; ``local:<path>`` loads one from a folder
(``meta/info.json`` inside). Both must have SO-100's state and action and at least one camera.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from node.errors import UserError
from node.so100 import ACTION_DIM, JOINTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetURI:
    """A parsed dataset URI: where the data lives, and under which repo id LeRobot knows it."""

    scheme: str  # "hf" | "local"
    location: str

    @classmethod
    def parse(cls, uri: str) -> DatasetURI:
        scheme, sep, location = uri.partition(":")
        if not sep or scheme not in ("hf", "local") or not location:
            raise UserError(f"bad dataset URI {uri!r}: use 'hf:<repo_id>' (Hugging Face Hub) or 'local:<path>'")
        if scheme == "hf" and location.count("/") != 1:
            raise UserError(f"bad Hub repo id {location!r} in {uri!r}: expected 'owner/name'")
        return cls(scheme, location)

    @property
    def repo_id(self) -> str:
        return self.location if self.scheme == "hf" else f"local/{Path(self.location).name}"

    @property
    def root(self) -> Path | None:
        return Path(self.location).expanduser().resolve() if self.scheme == "local" else None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.location}"


def load_metadata(uri: str | DatasetURI):
    """Load and check a dataset's metadata (features, fps, stats) without its frames."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    parsed = uri if isinstance(uri, DatasetURI) else DatasetURI.parse(uri)
    if parsed.scheme == "local" and not (parsed.root / "meta" / "info.json").exists():
        what = "does not exist" if not parsed.root.exists() else "is not a LeRobot dataset (no meta/info.json)"
        raise UserError(f"dataset folder {parsed.root} {what}; build one with 'zk0agg fixtures' or point to a "
                        "LeRobot dataset folder")
    try:
        meta = LeRobotDatasetMetadata(parsed.repo_id, root=parsed.root)
    except Exception as err:  # the Hub client raises many error types for "offline" and "no such repo"
        if parsed.scheme == "hf":
            raise UserError(f"cannot load {parsed} from the Hugging Face Hub ({type(err).__name__}): the Hub is "
                            "unreachable or the repo does not exist; use 'local:<path>' for a dataset on disk"
                            ) from None
        raise UserError(f"cannot read dataset {parsed}: {err}") from None
    check_features(meta.features, str(parsed))
    return meta


def load_dataset(uri: str | DatasetURI, delta_timestamps: dict[str, list[float]] | None = None,
                 episodes: list[int] | None = None):
    """Load a LeRobot dataset (frames included) after checking its features."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    parsed = uri if isinstance(uri, DatasetURI) else DatasetURI.parse(uri)
    load_metadata(parsed)
    # PyAV decodes everywhere; torchcodec needs FFmpeg's shared libraries, which many machines lack.
    try:
        return LeRobotDataset(parsed.repo_id, root=parsed.root, episodes=episodes, delta_timestamps=delta_timestamps,
                              video_backend="pyav")
    except Exception as err:
        if parsed.scheme == "local":  # LeRobot falls back to the Hub when local files are missing
            raise UserError(f"dataset folder {parsed.root} is incomplete or corrupted ({type(err).__name__}): "
                            "its data or video files are missing; record or copy it again") from None
        raise UserError(f"cannot load {parsed} ({type(err).__name__}: {err})") from None


def check_features(features: dict, name: str) -> None:
    """Require SO-100's joint state and action (float32, 6 named joints) and at least one camera."""
    for key in ("observation.state", "action"):
        feat = features.get(key)
        if feat is None:
            raise UserError(f"dataset {name} has no '{key}' feature: not an SO-100 dataset")
        if feat.get("dtype") != "float32" or tuple(feat.get("shape", ())) != (ACTION_DIM,):
            raise UserError(f"dataset {name}: '{key}' is {feat.get('dtype')} {tuple(feat.get('shape', ()))}, "
                            f"expected float32 ({ACTION_DIM},) for SO-100")
        names = feat.get("names")
        if isinstance(names, dict):  # some LeRobot datasets nest names as {"motors": [...]}
            names = next(iter(names.values()), None)
        if names is not None and list(names) != list(JOINTS):
            raise UserError(f"dataset {name}: '{key}' joints are {list(names)}, expected SO-100's {list(JOINTS)}")
    if not any(key.startswith("observation.images.") for key in features):
        raise UserError(f"dataset {name} has no camera (observation.images.*): SmolVLA needs at least one")
