"""Behaviour cloning of a SmolVLA model spec on expert demonstrations, with closed-loop success every N steps.

Centralized (one process, one dataset): the learning curve of a configuration, success vs optimizer steps, on
evaluation seeds no dataset uses. The frames are decoded once and kept in memory (uint8), so a step costs the
model's forward and backward only, not video decoding. Stops at ``--steps`` or ``--minutes``, whichever first.

    # 100 reach demonstrations, then 15 minutes of training of the `learn` spec
    .venv/bin/python scripts/sim_record.py --task reach --episodes 100 --workers 2 --root data/reach100
    .venv/bin/python scripts/learn_bc.py --dataset local:data/reach100 --task reach --model learn --minutes 15

Prints a markdown row per evaluation and writes them to ``<out>/curve.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from scripts.evalkit import cpu_seconds  # noqa: E402


def register_variant(spec: str, overrides: list[str]) -> str:
    """Register ``spec`` with some VLMShape fields changed as a model spec of its own (experiments)."""
    import dataclasses

    from node.model import SHAPES

    fields = {f.name: f.type for f in dataclasses.fields(SHAPES[spec])}
    changes = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--shape {item}: no field {key!r} in VLMShape")
        kind = str(fields[key])
        changes[key] = value.lower() == "true" if "bool" in kind else value if kind == "str" else int(value)
    name = spec + "+" + ",".join(f"{k}={v}" for k, v in changes.items())
    SHAPES[name] = dataclasses.replace(SHAPES[spec], name=SHAPES[spec].name + "-" + "-".join(
        f"{k}{v}" for k, v in changes.items()), **changes)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="local:<dir> of expert demonstrations")
    parser.add_argument("--task", default="reach", help="closed-loop task (the dataset's)")
    parser.add_argument("--model", default="learn", help="model spec (node.model): learn, tiny, ...")
    parser.add_argument("--shape", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="try a variant of the spec's VLMShape (e.g. image_size=64 num_vlm_layers=2)")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--decay-steps", type=int, default=0,
                        help="cosine decay of the learning rate to lr/100 over this many steps (0: constant lr)")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--eval-on", choices=("eval", "train"), default="eval",
                        help="closed loop on held-out evaluation seeds, or on the dataset's own episode seeds "
                             "(a fit check: does the policy redo what it was trained on?)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on 2 shared cores a second thread made steps ~10x slower)")
    parser.add_argument("--cache-dir", default=".zk0/fixtures")
    parser.add_argument("--out", default="outputs/learn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue the run saved in this --out folder (weights, optimizer, step, curve)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    from lerobot.datasets.factory import resolve_delta_timestamps

    from node.datasets import DatasetURI, load_dataset, load_metadata
    from node.frames import FrameCache
    from node.model import make_smolvla, save_policy
    from node.params import get_trainable
    from sim import eval_seeds, rollout

    if args.shape:
        args.model = register_variant(args.model, args.shape)
    if args.resume:
        args.model = f"local:{args.resume / 'checkpoint'}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start, cpu_start = time.perf_counter(), cpu_seconds()
    meta = load_metadata(args.dataset)
    bundle = make_smolvla(args.model, meta, Path(args.cache_dir), device=args.device, seed=args.seed)
    policy, pre = bundle.policy, bundle.preprocessor
    cfg = policy.config
    n_params = sum(p.numel() for p in policy.parameters())
    n_train = sum(v.size for v in get_trainable(policy).values())
    lerobot_data = load_dataset(args.dataset, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    data = FrameCache(lerobot_data, cfg.chunk_size)
    data.check(lerobot_data)
    print(f"{args.model}: {n_params / 1e6:.2f} M parameters, {n_train / 1e6:.2f} M trainable, action expert "
          f"{policy.model.action_out_proj.in_features} wide; chunk {cfg.chunk_size}, n_action_steps "
          f"{cfg.n_action_steps}, images {cfg.resize_imgs_with_padding}; {len(data)} frames "
          f"(loaded in {time.perf_counter() - t_start:.0f} s)", flush=True)

    preset = cfg.get_optimizer_preset()
    preset.lr = args.lr
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = preset.build(params)
    scheduler = None
    if args.decay_steps:
        from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig

        scheduler = CosineDecayWithWarmupSchedulerConfig(
            peak_lr=args.lr, decay_lr=args.lr / 100, num_warmup_steps=min(500, args.decay_steps // 10),
            num_decay_steps=args.decay_steps).build(optimizer, num_training_steps=args.decay_steps)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    if args.eval_on == "train":
        from sim.record import read_sim_meta

        seeds = read_sim_meta(DatasetURI.parse(args.dataset).root)["episode_seeds"][:args.eval_episodes]
    else:
        seeds = eval_seeds(args.eval_episodes)

    rows: list[dict] = []
    step = 0
    t_train, cpu_train = time.perf_counter(), cpu_seconds()
    eval_seconds = wall_before = cpu_before = train_before = 0.0
    if args.resume:  # the curve goes on: steps, wall and cpu seconds count from the first run
        rows = json.loads((args.resume / "curve.json").read_text())["rows"]
        step = rows[-1]["step"]
        if (args.resume / "train_state.pt").exists():  # else: a fresh optimizer on the saved weights
            state = torch.load(args.resume / "train_state.pt", weights_only=False)
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and "scheduler" in state:
                scheduler.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
        wall_before, cpu_before, train_before = rows[-1]["wall_s"], rows[-1]["cpu_s"], rows[-1]["train_wall_s"]

    def evaluate(step: int, losses: list[float]) -> None:
        nonlocal eval_seconds
        t0 = time.perf_counter()
        policy.eval()
        res = rollout(policy, pre, bundle.postprocessor, task=args.task, seeds=seeds,
                      video_dir=out / f"step_{step}", max_videos=2)
        policy.train()
        eval_seconds += time.perf_counter() - t0
        row = {"step": step, "loss": sum(losses) / max(len(losses), 1), "success": res.success_rate,
               "mean_length": res.mean_length, "eval_s": time.perf_counter() - t0,
               "train_wall_s": train_before + time.perf_counter() - t_train - eval_seconds,
               "wall_s": wall_before + time.perf_counter() - t_start, "cpu_s": cpu_before + cpu_seconds() - cpu_start,
               "load": os.getloadavg()[0]}
        rows.append(row)
        print(f"| {step} | {row['loss']:.4f} | {res.success_rate:.0%} | {res.mean_length:.0f} | "
              f"{row['train_wall_s']:.0f} | {row['wall_s']:.0f} | {row['cpu_s']:.0f} | {row['load']:.1f} |",
              flush=True)
        (out / "curve.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2, default=str))

    print("| step | train loss (since last) | success | mean length | train wall s | wall s | cpu s | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    policy.train()
    losses: list[float] = []
    budget_steps = step + args.steps
    while step < budget_steps and time.perf_counter() - t_train - eval_seconds < 60 * args.minutes:
        for batch in torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, generator=gen,
                                                 num_workers=0, drop_last=True):
            loss, _ = policy.forward(pre(batch))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, preset.grad_clip_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % args.eval_every == 0:
                evaluate(step, losses)
                losses = []
            if step >= budget_steps or time.perf_counter() - t_train - eval_seconds >= 60 * args.minutes:
                break
    if not rows or rows[-1]["step"] != step:
        evaluate(step, losses)
    save_policy(bundle, out / "checkpoint")
    torch.save({"optimizer": optimizer.state_dict(), "generator": gen.get_state(), "step": step,
                **({"scheduler": scheduler.state_dict()} if scheduler is not None else {})}, out / "train_state.pt")
    print(f"done: {step} steps, train {time.perf_counter() - t_train - eval_seconds:.0f} s, "
          f"cpu {cpu_seconds() - cpu_train:.0f} s", flush=True)


if __name__ == "__main__":
    main()
