"""Run several ``hf-dft`` commands in each process of one ``accelerate launch`` (one start-up for all of them), and
record the label sets each process verifies.

``python launched_cli.py RECORD_FOLDER -- ARGS... [-- ARGS...]``: runs ``hf_dft_head.cli.main(ARGS)`` for each
command in turn, up to the first non-zero exit code, and exits with the last code. After every command it writes
``RECORD_FOLDER/process<RANK>.json``: ``{"codes": [exit code per command], "verified": [the label sets of each
engine call, as id lists]}``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hf_dft_head import cli, sharding


def recording(calls: list[list[list[int]]]) -> Callable:
    """``sharding.verify_label_sets`` that first appends the label sets it is given to ``calls``."""
    engine = sharding.verify_label_sets

    def verify_label_sets(*, label_sets, **options):
        calls.append([[int(i) for i in labels] for labels in label_sets])
        return engine(label_sets=label_sets, **options)

    return verify_label_sets


def main() -> int:
    record = Path(sys.argv[1]) / f"process{os.environ.get('RANK', '0')}.json"
    commands, rest = [], sys.argv[2:]
    while rest and rest[0] == "--":
        end = rest.index("--", 1) if "--" in rest[1:] else len(rest)
        commands.append(rest[1:end])
        rest = rest[end:]
    codes: list[int] = []
    verified: list[list[list[int]]] = []
    sharding.verify_label_sets = recording(verified)
    for argv in commands:
        codes.append(cli.main(argv))
        record.write_text(json.dumps({"codes": codes, "verified": verified}))
        if codes[-1] != 0:
            break
    return codes[-1] if codes else 2


if __name__ == "__main__":
    sys.exit(main())
