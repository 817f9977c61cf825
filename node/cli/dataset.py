"""``zk0node dataset check``: find a bad dataset before a round fails on it."""

from __future__ import annotations

import argparse

from node.cliargs import add_command, add_group


def _dataset_check(args: argparse.Namespace) -> int:
    from node.datasets import check_readable, load_metadata

    meta = load_metadata(args.uri)
    read = check_readable(args.uri)
    cams = [k.removeprefix("observation.images.") for k in meta.features if k.startswith("observation.images.")]
    print(f"ok: {args.uri}: {meta.total_episodes} episodes, {meta.total_frames} frames at {meta.fps} fps, "
          f"robot {meta.robot_type}, cameras {', '.join(cams)}, tasks {len(meta.tasks)}; "
          f"{'one frame read from ' + ', '.join(read) if read else 'frames not read (Hub dataset)'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    dsub = add_group(sub, "dataset", help="check a dataset before training on it")
    check = add_command(dsub, "check", _dataset_check,
                        help="load a dataset's metadata and check it is an SO-100 LeRobot dataset")
    check.add_argument("uri", help="hf:<owner/name> (Hugging Face Hub) or local:<path> (a LeRobot dataset folder)")
