"""Checkpoint folders: which files a certificate binds, loading any multi-label checkpoint, fetching Hub repos.

The bound files of a checkpoint folder are every regular file under it, in sub-folders too, except

* ``README.md`` at the top (the model card: ``hf-dft push`` renders it from the verified certificate),
* ``dft_certificate.json`` itself,
* the training state folder ``state/`` at the top (what ``hf-dft train --resume`` reads; never published),
* hidden paths (a name starting with ``.``, e.g. ``.cache/`` or ``.gitattributes``): ``push`` never uploads them
  and ``from_pretrained`` never reads them.

Symbolic links are refused anywhere in the bound part of the folder: a link can change what it points to after
certification, and uploading it would publish the target's bytes, not the link. ``push`` uploads exactly the bound
files (plus the certificate and the card), so "verified" and "published" are the same set of bytes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from .configuration import DFTConfig
from .gale import check_label_order
from .modeling import DFTForMultiLabelClassification

logger = logging.getLogger(__name__)

CERTIFICATE_NAME = "dft_certificate.json"
CARD_NAME = "README.md"
STATE_DIR = "state"
#: Files a Hub repo may hold beyond the bound ones: the card, the certificate and git's attributes file.
UNBOUND_REPO_FILES = (CARD_NAME, CERTIFICATE_NAME, ".gitattributes")
PACKAGE_DIR = Path(__file__).resolve().parent


class CheckpointError(ValueError):
    """A checkpoint folder or repo id that cannot be used; the message says why and what to do."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# The bound files
# ----------------------------------------------------------------------------------------------------------------


def is_bound_path(relative: str) -> bool:
    """Whether a path relative to the checkpoint folder (``/``-separated) is bound by the certificate."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part.startswith(".") for part in parts):
        return False
    if len(parts) == 1 and parts[0] in (CARD_NAME, CERTIFICATE_NAME):
        return False
    return parts[0] != STATE_DIR


@dataclass
class FileInventory:
    """The bound files of a folder (sorted relative ``/`` paths) and the symbolic links found where files are bound."""

    files: list[str] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)


def bound_files(folder: str | os.PathLike) -> FileInventory:
    """Walk ``folder`` (never following links) and list the files a certificate binds; see the module docstring."""
    root = Path(folder)
    inventory = FileInventory()
    for directory, subdirectories, names in os.walk(root, followlinks=False):
        here = Path(directory)
        for name in sorted(subdirectories):
            relative = (here / name).relative_to(root).as_posix()
            if is_bound_path(relative) and (here / name).is_symlink():
                inventory.symlinks.append(relative)  # os.walk does not descend into it: report it instead
        subdirectories[:] = [
            name
            for name in subdirectories
            if is_bound_path((here / name).relative_to(root).as_posix()) and not (here / name).is_symlink()
        ]
        for name in names:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if not is_bound_path(relative):
                continue
            if path.is_symlink():
                inventory.symlinks.append(relative)
            elif path.is_file():
                inventory.files.append(relative)
    inventory.files.sort()
    inventory.symlinks.sort()
    return inventory


def hash_files(folder: str | os.PathLike, names: list[str]) -> dict[str, str]:
    """``{relative path: sha256}`` of ``names`` in ``folder``."""
    return {name: sha256_file(Path(folder) / name) for name in names}


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when the file is missing, unreadable or not an object."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_card_inputs(folder: str | os.PathLike) -> dict[str, dict[str, Any] | None]:
    """What :func:`hf_dft_head.model_card.render_model_card` renders: ``config`` (``config.json``), ``certificate``
    (``dft_certificate.json``) and ``training_args`` (``training_args.json``) of a checkpoint folder, as dicts
    (``None`` where the file is missing or unreadable).

    Raises ``ValueError`` when ``config.json`` is not readable, or when its ``label_order`` is not a permutation of
    the label ids (:func:`hf_dft_head.gale.check_label_order`): the card lists the labels around the circle by it.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if config is None:
        raise ValueError(f"{folder} has no readable config.json: is it a checkpoint folder?")
    if config.get("head_kind") == "dft" and config.get("label_order") is not None:
        n = int(config.get("num_labels") or len(config.get("id2label") or {}))
        config = {**config, "label_order": check_label_order(config["label_order"], n).tolist()}
    return {
        "config": config,
        "certificate": _read_json(folder / CERTIFICATE_NAME),
        "training_args": _read_json(folder / "training_args.json"),
    }


# ----------------------------------------------------------------------------------------------------------------
# Remote code: what save_pretrained ships, and what auto_map may point at
# ----------------------------------------------------------------------------------------------------------------


def expected_auto_map() -> dict[str, str]:
    """The ``auto_map`` of a checkpoint saved by this package: its own two classes, nothing from elsewhere."""
    model = f"modeling.{DFTForMultiLabelClassification.__name__}"
    return {
        "AutoConfig": f"configuration.{DFTConfig.__name__}",
        "AutoModel": model,
        "AutoModelForSequenceClassification": model,
    }


def _relative_imports(module_file: Path) -> list[str]:
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    return [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and "." not in node.module
    ]


def remote_code_files() -> list[str]:
    """The package's module files a checkpoint carries: the auto_map modules and their sibling imports, closed."""
    pending = sorted({value.split(".")[0] + ".py" for value in expected_auto_map().values()})
    found: set[str] = set()
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        pending += [f"{module}.py" for module in _relative_imports(PACKAGE_DIR / name)]
    return sorted(found)


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------


def check_multi_label_config(config, *, assume_multi_label: bool = False) -> None:
    """Raise a ``ValueError`` unless ``config`` describes a sigmoid multi-label classifier.

    ``problem_type`` must be ``"multi_label_classification"``. Unset (``None``) is refused too unless
    ``assume_multi_label``: transformers' pipelines apply a *softmax* to such a model when it has several labels,
    so its outputs are not independent sigmoids.
    """
    problem_type = getattr(config, "problem_type", None)
    num_labels = int(getattr(config, "num_labels", 0) or 0)
    if problem_type == "regression" or (problem_type is None and num_labels == 1):
        raise ValueError(
            f"This checkpoint is a regression model (problem_type={problem_type!r}, num_labels={num_labels}): it has "
            "no sigmoid label head, so there is nothing to audit."
        )
    if problem_type == "single_label_classification":
        raise ValueError(
            "This checkpoint is a single-label (softmax) classifier (problem_type='single_label_classification'): "
            "exactly one label is predicted by an argmax, so label-set argmaxability does not apply. The audit is "
            "for sigmoid multi-label models (problem_type='multi_label_classification')."
        )
    if problem_type is None and not assume_multi_label:
        raise ValueError(
            "The checkpoint's config has no problem_type; transformers treats such a model with several labels as a "
            "softmax classifier. If it was trained with a sigmoid/BCE loss, set config.problem_type = "
            "'multi_label_classification' (or pass assume_multi_label=True / --assume-multi-label)."
        )
    if problem_type not in (None, "multi_label_classification"):
        raise ValueError(f"Unsupported problem_type={problem_type!r}; expected 'multi_label_classification'.")
    if num_labels < 2:
        raise ValueError(f"A multi-label head needs at least 2 labels, this config has num_labels={num_labels}.")


def load_checkpoint(path: str | os.PathLike, *, assume_multi_label: bool = False, dft_config: bool = False):
    """``(model, tokenizer or None)`` for a local checkpoint folder (or a Hub id) of any multi-label classifier.

    ``dft_config``: the caller knows config.json is a :class:`~hf_dft_head.DFTConfig` and it is read as one: the same
    config as ``AutoConfig`` gives, 2.4 s sooner at 1M labels (transformers' generic reader walks every label).

    Our DFT checkpoints load through the Auto classes the package registered on import; stock ones through
    ``AutoModelForSequenceClassification``. The config is checked first so a single-label model is refused before
    its weights are read. A checkpoint whose files do not fit together (a renamed weights file, a config whose
    sizes differ from the weights) raises a ``CheckpointError`` naming what transformers found.
    """
    try:
        config = (DFTConfig if dft_config else AutoConfig).from_pretrained(path)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"Cannot read the config of {path}: {_first_line(error)}") from None
    check_multi_label_config(config, assume_multi_label=assume_multi_label)
    if getattr(config, "problem_type", None) is None:
        config.problem_type = "multi_label_classification"
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"Cannot load the weights of {path}: {_first_line(error)}. config.json and the weights do not fit "
            "together (a weights file renamed, or the config edited after saving?)"
        ) from None
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, config=config)  # the config read above, not read again
    except (OSError, ValueError, TypeError) as error:
        logger.warning("No tokenizer could be loaded from %s (%s): predictions cannot be computed.", path, error)
        tokenizer = None
    return model, tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------------------------------------
# Hub repos
# ----------------------------------------------------------------------------------------------------------------


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hub model repo id (``name`` or ``namespace/name``), else a ``CheckpointError``."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise CheckpointError(
            f"{repo_id!r} is not a valid Hub repo id ({_first_line(error)}). Use namespace/name, e.g. "
            "alice/disaster-dft-minilm: letters, digits, '-', '_' and '.', at most 96 characters."
        ) from None
    return repo_id


def looks_like_repo_id(name: str) -> bool:
    """A string that can only mean a Hub repo (``namespace/name``), not a local path."""
    return (
        not name.startswith((".", "/", "~"))
        and name.count("/") == 1
        and not Path(name).exists()
        and all(name.split("/"))
    )


def download_checkpoint(
    repo_id: str, local_dir: str | os.PathLike, *, revision: str | None = None, token: str | None = None
) -> list[str]:
    """Download every file of a Hub repo into ``local_dir`` as regular files; returns the repo's file list.

    The list comes from the Hub, so a verification also sees files a snapshot would put into hidden paths.
    """
    check_repo_id(repo_id)
    try:
        snapshot_download(repo_id, revision=revision, token=token, local_dir=str(local_dir))
        return sorted(HfApi(token=token).list_repo_files(repo_id, revision=revision))
    except RepositoryNotFoundError:
        raise CheckpointError(f"{repo_id!r} is neither a local folder nor a Hub repo this token can read.") from None
    except (HfHubHTTPError, OSError, ValueError) as error:  # offline, unreachable, server errors
        raise CheckpointError(f"Could not download {repo_id!r}: {_first_line(error)}") from None
