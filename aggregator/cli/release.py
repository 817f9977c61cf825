"""``zk0agg release``: a round's global model as a Hugging Face Hub-ready folder, with a model card and its
on-chain provenance (``zk0agg verify-model`` checks one)."""

from __future__ import annotations

import argparse
import os

from aggregator.cli.common import AGGREGATOR_KEY_ENV, read_key
from node.cliargs import add_command
from node.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    release = add_command(sub, "release", _release,
                          help="a round's global model as a Hugging Face Hub-ready folder, with "
                          "a model card and its on-chain provenance")
    release.add_argument("--run", required=True, metavar="DIR", help="the run's output folder (outputs/<run>)")
    release.add_argument("--round", type=int, help="the round whose model to release (default: the last one)")
    release.add_argument("--out", required=True, metavar="DIR", help="the release folder to write (new or empty)")
    release.add_argument("--dataset", action="append", default=[], metavar="ORG/NAME",
                         help="a Hub dataset to name in the card, only for a contributor who agreed to be named "
                         "(repeatable; default: none named)")
    release.add_argument("--license", default="apache-2.0", help="the model's license in the card (default "
                         "apache-2.0)")
    release.add_argument("--aggregator-key-file", metavar="FILE",
                         help="the key that opened the run on chain, which signs the release's manifest of every file "
                         f"(default: env {AGGREGATOR_KEY_ENV}; a run with no chain needs none)")
    release.add_argument("--merged", action="store_true", help="LoRA runs: also write merged/, the adapter merged "
                         "into its base (a plain SmolVLA folder that loads without PEFT)")
    release.add_argument("--repo-id", metavar="ORG/NAME", help="the Hub model repo for --push")
    release.add_argument("--push", action="store_true", help="upload the folder to the Hub (token: HF_TOKEN or "
                         "huggingface-cli login)")


def _release(args: argparse.Namespace) -> int:
    from aggregator.tools.release import build_release, push_release

    if args.push and not args.repo_id:
        raise UserError("--push needs --repo-id ORG/NAME (the Hub model repo to create or update)")
    key = (read_key(args.aggregator_key_file, AGGREGATOR_KEY_ENV, "aggregator")
           if args.aggregator_key_file or os.environ.get(AGGREGATOR_KEY_ENV) else None)
    release = build_release(args.run, args.out, args.round, datasets=args.dataset, license_=args.license,
                            aggregator_key=key, merged=args.merged)
    p = release.provenance
    print(f"release of round {release.round} of {p['run_id']} in {release.out}\n"
          f"  model hash   {release.model_hash}\n"
          f"  closeRound   {p['close_round_tx'] or '- (unverified run)'} (chain {p['chain_id']}, "
          f"registry {p['registry']})\n"
          f"  contributors {sum(c['status'] == 'SELECTED' for c in p['contributors'])} selected of "
          f"{len(p['contributors'])} verified\n"
          f"  datasets     {', '.join(release.datasets) or 'none named'}\n"
          f"  signed by    {release.signer or '- (a run with no chain: unsigned)'}\n"
          f"check it: zk0agg verify-model {release.out} --chain-rpc URL --registry {p['registry']}")
    if args.push:
        print(f"pushed to https://huggingface.co/{args.repo_id}: {push_release(release.out, args.repo_id)}")
    return 0
