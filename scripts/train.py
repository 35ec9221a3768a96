"""Thin entry for ``accelerate launch scripts/train.py ...``: the same as ``hf-dft train ...``."""

import sys

from hf_dft_head.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
