"""Starting real multi-process runs with ``accelerate launch`` on CPU (gloo), for the tests of data parallelism."""

from __future__ import annotations

import os
import socket
import sys


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the launch's rendezvous port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(num_processes: int, *program: str) -> list[str]:
    """The command that runs ``program`` (a script path, or ``-m module``, and its arguments) in ``num_processes``
    processes on this machine: ``--multi_gpu`` asks for ``torch.distributed.run``, which ``launch_environment()``'s
    ``ACCELERATE_USE_CPU`` turns to gloo on CPU (``--cpu`` would start one process only)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *program,
    ]


def launch_environment(**extra: str) -> dict[str, str]:
    """This environment with CPU processes of one thread each (the machine has few cores)."""
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **extra}
