"""The saved state of a training run, for ``--resume``: its progress (:class:`TrainingProgress`) next to
Accelerate's state (model, optimiser, scheduler, RNG) in ``output_dir/state``, replaced whole at each save; and the
writer of the run's JSON records.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator

from .checkpoints import STATE_DIR
from .output_checks import atomic_write

#: The run's progress inside ``state/``.
TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainingProgress:
    """What ``--resume`` needs beyond the Accelerate state: where in the data, and the best result so far."""

    epoch: int = 0
    step_in_epoch: int = 0  # optimiser steps already taken in ``epoch``
    global_step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> TrainingProgress:
        return cls(**json.loads(path.read_text()))


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write the run's JSON records (sorted keys) through :func:`~hf_dft_head.output_checks.atomic_write`."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=json_default)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_training_state(accelerator: Accelerator, output_dir: Path, state: TrainingProgress) -> None:
    """Save model, optimiser, scheduler, RNG and data position into ``output_dir/state`` (replacing it whole)."""
    tmp = output_dir / f"{STATE_DIR}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / TRAINER_STATE, dataclasses.asdict(state))
        final = output_dir / STATE_DIR
        old = output_dir / f"{STATE_DIR}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
