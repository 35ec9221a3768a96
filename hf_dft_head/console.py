"""What the ``hf-dft`` commands print: one progress bar per long phase, a short summary, warnings that matter.

Three levels, set once by the CLI (:func:`configure_output`):

* default: our own progress bars for the long phases (encoding with the frozen encoder, training, predictions,
  verification), the warnings of the package, and a summary at the end. The progress bars of ``datasets`` for its
  many short steps (reading, filtering, flattening) and the informational logs and bars of ``transformers`` are off;
* ``--quiet``: no progress bar at all (ours, ``datasets``', ``transformers``', ``huggingface_hub``'s); warnings and
  the summary remain;
* ``-v``: everything, with INFO logs of the package and of the libraries.

A long phase that runs through ``datasets.map`` shows its bar through :func:`datasets_progress`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import datasets
import huggingface_hub.utils
import transformers
from huggingface_hub import constants as hub_constants

#: Whether the phases' progress bars are shown (``--quiet`` turns them off).
_PROGRESS = {"enabled": True, "verbose": False}


def configure_output(*, verbose: bool = False, quiet: bool = False) -> None:
    """Set the logging and progress-bar policy of the package and its libraries for this process."""
    _PROGRESS["enabled"], _PROGRESS["verbose"] = not quiet, verbose
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    logging.getLogger("hf_dft_head").setLevel(level)
    if verbose:
        transformers.logging.set_verbosity_info()
        datasets.logging.set_verbosity_info()
        if not _bars_forbidden():
            datasets.enable_progress_bars()
            transformers.logging.enable_progress_bar()
    else:
        transformers.logging.set_verbosity_error()
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        transformers.logging.disable_progress_bar()
    if quiet and hub_constants.HF_HUB_DISABLE_PROGRESS_BARS is not False:
        huggingface_hub.utils.disable_progress_bars()


def _bars_forbidden() -> bool:
    """The user's ``HF_HUB_DISABLE_PROGRESS_BARS=1`` wins over our wish to show a bar."""
    return hub_constants.HF_HUB_DISABLE_PROGRESS_BARS is True


def progress_enabled() -> bool:
    """Whether long phases show a progress bar (False under ``--quiet``)."""
    return _PROGRESS["enabled"]


@contextlib.contextmanager
def datasets_progress(enabled: bool = True) -> Iterator[None]:
    """Show ``datasets``' progress bar for the ``map`` inside (a long phase), then restore the previous policy."""
    was_enabled = datasets.is_progress_bar_enabled()
    if enabled and _PROGRESS["enabled"] and not _bars_forbidden():
        datasets.enable_progress_bars()
    try:
        yield
    finally:
        if not was_enabled:
            datasets.disable_progress_bars()
