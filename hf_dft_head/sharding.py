"""Label-set verification shared out over the processes of ``accelerate launch``, gathered back in input order.

``accelerate launch -m hf_dft_head.cli audit ...`` (and ``certify``, ``verify``) starts the same command in every
process. Each process loads the model and the split and predicts on it (the same work everywhere: the predicted
sets decide which label sets are verified); then :func:`verify_label_sets_sharded` gives process ``i`` of ``p`` the
sets ``i, i + p, i + 2p, ...`` of the list (round robin over the sets ordered by (size, ids), so every process gets
sets of every size and about the same amount of LP work), runs :func:`hf_dft_head.argmax.verify_label_sets` on them,
and gathers every process's verdicts to every process (``accelerate.utils.gather_object``), in input order. Each
set's verdict is computed by itself (``verify_label_sets`` gives the same verdicts for any ``n_jobs`` and any
grouping of the sets), so the gathered result is the one-process result, and every process can build the report;
only the main process writes it (:attr:`Processes.is_main`).

Sharding is switched on by the command line (:func:`across_launched_processes` around one command), never by a
library call on its own: a script that calls :func:`hf_dft_head.audit.audit_head` on its main process only, under
``accelerate launch``, would otherwise wait forever for the others at the gather.

Failures. A process that crashes or exits with an error ends the launch: the launcher (``torch.distributed.run``)
stops every other process at once. A process that hangs holds the others at a gather for at most
``GATHER_TIMEOUT``, after which they fail. Bad input (a missing file, an unknown label column) is met by every
process alike; the main process reports it and the others stay silent (:func:`report_error`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from accelerate import PartialState
from accelerate.utils import gather_object

from .argmax import VerificationResult, verify_label_sets
from .argmax.radii import sets_digest

#: How long a process waits at a gather for the others (a hung process fails the launch after this). The shares are
#: balanced (round robin over sets ordered by size), so the wait is the imbalance between shares, not an audit's
#: whole length; torch's default of 30 minutes could still end a legitimate multi-hour audit.
GATHER_TIMEOUT = dt.timedelta(hours=6)
#: How long a process other than the main one, after an error, waits before it reports the error itself: the main
#: process meets the same bad input, reports it once, and its exit makes the launcher stop this one first.
ERROR_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Processes:
    """The processes one command runs in: this one's ``index`` of ``count`` (``local_count`` on this machine)."""

    index: int = 0
    count: int = 1
    local_count: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the outputs and prints the summary (process 0)."""
        return self.index == 0

    @property
    def sharded(self) -> bool:
        """Whether there is more than one process."""
        return self.count > 1

    def share(self, total: int) -> range:
        """This process's positions among ``total`` items: round robin ``index, index + count, ...``."""
        return range(self.index, total, self.count)

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in process order, on every process; ``[value]`` for one process."""
        if not self.sharded:
            return [value]
        return gather_object([value])


def launched_processes() -> Processes:
    """The processes of an ``accelerate launch`` (``WORLD_SIZE`` > 1 in the environment), else one process.

    Run plainly, nothing is initialised; under a launch, accelerate's ``PartialState`` joins the process group
    with ``GATHER_TIMEOUT``. Its CPU flavour (gloo) on any machine: what travels is pickled verdicts, and the
    verification runs on CPU cores whatever accelerators the machine has.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    state = PartialState(cpu=True, timeout=GATHER_TIMEOUT)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    return Processes(int(state.process_index), int(state.num_processes), max(1, local))


_ACTIVE: list[Processes] = [Processes()]


def current() -> Processes:
    """The processes the running command is shared over (one process outside :func:`across_launched_processes`)."""
    return _ACTIVE[-1]


@contextlib.contextmanager
def across_launched_processes() -> Iterator[Processes]:
    """Within this block, :func:`verify_label_sets_sharded` shares its sets over the launched processes.

    Every process must then make the same sequence of verification calls (each is a gather).
    """
    _ACTIVE.append(launched_processes())
    try:
        yield _ACTIVE[-1]
    finally:
        _ACTIVE.pop()


def cores_per_process(cores: int) -> int:
    """``cores`` (this process's available cores) shared by the launched processes on this machine (at least 1).

    Two processes on two cores each get one LP worker, not two each.
    """
    return max(1, cores // current().local_count)


def verify_label_sets_sharded(label_sets: Sequence[Sequence[int]], **engine: Any) -> VerificationResult:
    """:func:`~hf_dft_head.argmax.verify_label_sets` of ``label_sets`` (id lists), shared over :func:`current`.

    Each process verifies its :meth:`Processes.share` and every process gets all verdicts back in input order:
    the same :class:`~hf_dft_head.argmax.VerificationResult` one process computes. ``engine``: the other arguments
    of ``verify_label_sets``; the progress bar is shown by the main process only. Raises ``RuntimeError`` when the
    processes were given different lists (their predictions differed), rather than mixing up verdicts.
    """
    processes = current()
    if not processes.sharded:
        return verify_label_sets(label_sets=label_sets, **engine)
    positions = list(processes.share(len(label_sets)))
    engine["progress"] = bool(engine.get("progress", True)) and processes.is_main
    answer = verify_label_sets(label_sets=[label_sets[i] for i in positions], **engine)
    shares = processes.gather((sets_digest(label_sets), positions, answer.verdicts))
    if len({digest for digest, _, _ in shares}) > 1:
        raise RuntimeError(
            "The launched processes were given different label sets to verify (their predictions on the split "
            "differ): run the command in one process, or with deterministic predictions."
        )
    verdicts: list[Any] = [None] * len(label_sets)
    for _, share_positions, share_verdicts in shares:
        for position, verdict in zip(share_positions, share_verdicts):
            verdicts[position] = verdict
    return dataclasses.replace(answer, verdicts=verdicts)


def report_error(message: str) -> None:
    """Print one command-line error ``message`` to stderr once per launch, not once per process.

    The main process prints it. Another process waits ``ERROR_GRACE_SECONDS`` first: bad input is met by every
    process, and the main process's exit makes the launcher stop this one before it prints; an error of this
    process alone is printed after the wait, naming the process.
    """
    index = int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    if index != 0:
        time.sleep(ERROR_GRACE_SECONDS)
        message = f"(process {index}) {message}"
    print(message, file=sys.stderr)
