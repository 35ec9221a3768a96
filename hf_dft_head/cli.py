"""The ``hf-dft`` console entry: one command, one subcommand per job.

hf-dft train    train a classifier (run it under ``accelerate launch`` for several processes)
hf-dft audit    which gold label sets can a multi-label sigmoid model never output?
hf-dft certify  write an argmaxability certificate into a checkpoint
hf-dft verify   recompute a certificate; non-zero exit on any mismatch
hf-dft push     publish a certified checkpoint to the Hub
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from transformers import HfArgumentParser

# subcommand -> (module, help); each module exposes add_<name>_arguments(parser) and run_<name>(args) -> int
SUBCOMMANDS = {
    "audit": ("hf_dft_head.audit", "Audit any multi-label sigmoid checkpoint: which label sets can it never output?"),
    "certify": ("hf_dft_head.certificate", "Write an argmaxability certificate into a DFT checkpoint."),
    "verify": ("hf_dft_head.certificate", "Recompute a checkpoint's certificate (local folder or Hub repo)."),
    "push": ("hf_dft_head.hub", "Publish a certified checkpoint to the Hugging Face Hub."),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``hf-dft`` parser with all subcommands."""
    from .training import TrainingArguments

    parser = argparse.ArgumentParser(prog="hf-dft", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    subparsers.add_parser(
        "train",
        help="Train a multi-label classifier (DFT, bottleneck or dense head) with Accelerate.",
        description="Train on a Hub data set or local files; with no --dataset, on the bundled disaster-response "
        "messages with the bundled all-MiniLM-L6-v2 encoder.",
        dataclass_types=[TrainingArguments],
    )
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(
            name, help=help_text, description=help_text, dataclass_types=[], formatter_class=argparse.HelpFormatter
        )
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # subcommand not available in this build
        getattr(module, f"add_{name}_arguments")(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "train":
            from .training import TrainingArguments, train

            fields = TrainingArguments.__dataclass_fields__
            train(TrainingArguments(**{key: value for key, value in vars(args).items() if key in fields}))
            return 0
        module = importlib.import_module(SUBCOMMANDS[args.command][0])
        return int(getattr(module, f"run_{args.command}")(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        # Bad input: one clear line, no traceback, nothing written has been removed.
        print(f"hf-dft {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
