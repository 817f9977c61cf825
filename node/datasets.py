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

META_FILES = ("meta/info.json", "meta/tasks.parquet", "meta/episodes")  # LeRobot v3 metadata a local folder needs


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
    if parsed.scheme == "local":  # else LeRobot looks for the missing metadata on the Hub, and says so obscurely
        for name in META_FILES:
            if not (parsed.root / name).exists():
                raise UserError(f"dataset folder {parsed.root} lacks {name}: it is incomplete; record or copy it "
                                "again")
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


def check_readable(uri: str | DatasetURI) -> list[str]:
    """Every data and video file the episodes name is there, and one frame of each can be read: the first data
    file's first row group, and each camera's first frame (decoded with PyAV, as training does). Returns the files
    read; a ``UserError`` names the missing or broken one. Checked at ``dataset check`` and ``start``, so a broken
    dataset is found before the node joins, not by failing every round. Local folders only (a Hub dataset is
    downloaded when loaded)."""
    import av
    import pyarrow.parquet as pq

    parsed = uri if isinstance(uri, DatasetURI) else DatasetURI.parse(uri)
    meta = load_metadata(parsed)
    if parsed.scheme != "local":
        return []
    root = parsed.root
    cameras = list(meta.video_keys)
    data, videos = [], {key: [] for key in cameras}
    try:
        for episode in range(meta.total_episodes):
            data.append(meta.get_data_file_path(episode))
            for key in cameras:
                videos[key].append(meta.get_video_file_path(episode, key))
    except (KeyError, IndexError, ValueError) as err:
        raise UserError(f"dataset {parsed}: meta/episodes does not match meta/info.json ({err}); record or copy it "
                        "again") from None
    for name in dict.fromkeys([*data, *(f for files in videos.values() for f in files)]):
        if not (root / name).is_file():
            raise UserError(f"dataset {parsed}: {name} is missing; record or copy the dataset again")
    read = [str(data[0])] if data else []
    try:
        if data:
            pq.ParquetFile(root / data[0]).read_row_group(0)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise UserError(f"dataset {parsed}: {data[0]} is not a readable parquet file ({type(err).__name__}: "
                        f"{err})") from None
    libav = logging.getLogger("libav")  # PyAV logs FFmpeg's complaint too: the one-line error below says it
    level = libav.level
    libav.setLevel(logging.CRITICAL)
    try:
        for key, files in videos.items():
            if not files:
                continue
            try:
                with av.open(str(root / files[0])) as container:
                    next(container.decode(video=0))
            except Exception as err:  # noqa: BLE001 - PyAV raises many error types, StopIteration for no frame
                raise UserError(f"dataset {parsed}: camera {key.removeprefix('observation.images.')}: {files[0]} has "
                                f"no decodable frame ({type(err).__name__}: {str(err)[:100]})") from None
            read.append(str(files[0]))
    finally:
        libav.setLevel(level)
    return read


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
