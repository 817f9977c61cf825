"""Training speed and memory of SmolVLA on this machine: the tiny model and the full-size architecture.

Each case runs in its own process so its peak RSS is its own. Prints a table (steps/s, s/step, peak RSS,
parameters, the bytes of a node's reply on the wire). The full-size case uses random weights (SmolVLM2-500M
architecture written by hand: the Hub is unreachable here), which costs the same compute as the pretrained model.
With ``--lora-rank R`` every case also runs in LoRA mode (node/lora.py: only the adapters' B's train and travel).

    .venv/bin/python scripts/bench_train.py [--steps 20] [--full-steps 3] [--device cpu|cuda] [--lora-rank R]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")


def run_case(model: str, batch: int, steps: int, device: str, cache: Path, lora_rank: int = 0) -> dict:
    """Child process: build fixtures and model, time ``steps`` optimizer steps after one warm-up step."""
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps

    from node.datasets import load_dataset, load_metadata
    from node.logs import setup_logging
    from node.model import make_smolvla
    from node.params import FLAT, get_trainable, pack
    from node.synthetic import SyntheticSpec, build_synthetic_dataset
    from node.train import TrainConfig, fedprox_train

    setup_logging(False)
    root = build_synthetic_dataset(cache / "bench-ds", SyntheticSpec("wave", 0, 2, 60))
    meta = load_metadata(f"local:{root}")
    bundle = make_smolvla(model, meta, cache, device=device, lora_rank=lora_rank)
    ds = load_dataset(f"local:{root}", delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    start = get_trainable(bundle.policy)
    fedprox_train(bundle, ds, start, TrainConfig(steps=1, batch_size=batch, progress=False))  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fedprox_train(bundle, ds, start, TrainConfig(steps=steps, batch_size=batch, progress=False))
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in bundle.policy.parameters())
    trainable = sum(p.numel() for p in bundle.policy.parameters() if p.requires_grad)  # what a reply carries
    out = {"model": model, "lora_rank": lora_rank, "reply_mb": len(pack(start)["arrays"][FLAT].data) / 1e6,
           "batch": batch, "steps": steps, "device": device, "s_per_step": seconds / steps,
           "steps_per_s": steps / seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "params_m": params / 1e6, "trainable_m": trainable / 1e6, "threads": torch.get_num_threads()}
    if device == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps for the tiny model")
    parser.add_argument("--full-steps", type=int, default=3, help="timed steps for the full-size model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--lora-rank", type=int, default=0, help="also run every case in LoRA mode at this rank")
    parser.add_argument("--out", type=Path, help="also write the rows here (JSON)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache = Path(os.environ.get("ZK0_BENCH_CACHE", Path(tempfile.gettempdir()) / "zk0-bench"))
    if args.case:
        model, batch, steps, rank = args.case.split(",")
        print(json.dumps(run_case(model, int(batch), int(steps), args.device, cache, int(rank))))
        return
    cases = [] if args.skip_tiny else [("tiny", 8, args.steps), ("tiny", 1, args.steps)]
    if not args.skip_full:
        cases.append(("full-random", 1, args.full_steps))
    rows = []
    for (model, batch, steps), rank in [(c, r) for c in cases for r in sorted({0, args.lora_rank})]:
        proc = subprocess.run([sys.executable, __file__, "--case", f"{model},{batch},{steps},{rank}", "--device",
                               args.device], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{model} batch {batch}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(f"{'model':<12} {'lora':>4} {'device':<6} {'batch':>5} {'params M':>9} {'train M':>8} {'reply MB':>9} "
          f"{'s/step':>8} {'steps/s':>8} {'peak RSS GB':>11}" + ("  peak GPU GB" if args.device == "cuda" else ""))
    for r in rows:
        print(f"{r['model']:<12} {r['lora_rank']:>4} {r['device']:<6} {r['batch']:>5} {r['params_m']:>9.1f} "
              f"{r['trainable_m']:>8.3f} {r['reply_mb']:>9.3f} "
              f"{r['s_per_step']:>8.3f} {r['steps_per_s']:>8.2f} {r['peak_rss_gb']:>11.2f}"
              + (f"  {r['peak_gpu_gb']:>11.2f}" if "peak_gpu_gb" in r else ""))


if __name__ == "__main__":
    main()
