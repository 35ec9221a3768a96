"""Publishing certified checkpoints through the real huggingface_hub client, against the loopback Hub server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_fixtures import DEFAULT_USER, hub_server_fixture  # noqa: F401  (the hub_server fixture)
from hub_server import HubServer
from safetensors.numpy import load_file, save_file
from test_certificate import build_checkpoint, write_dataset

from hf_dft_head import certificate, hub
from hf_dft_head.audit import dataset_spec
from hf_dft_head.cli import main as cli_main

TEXTS = ["need help now", "the flood water", "fire fire help"]
REMOTE_CODE_CHILD = """
import sys
sys.modules["hf_dft_head"] = None  # the plugin must not be importable: remote code only
import json, torch
from transformers import AutoModel, AutoTokenizer
repo = sys.argv[1]
model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
with torch.no_grad():
    logits = model(**tokenizer(json.loads(sys.argv[2]), padding=True, return_tensors="pt")).logits
print(type(model).__module__)
print(json.dumps(logits.double().tolist()))
"""


@pytest.fixture(scope="module")
def certified_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("push")
    folder, data = build_checkpoint(root / "dft"), write_dataset(root / "gold.jsonl")
    assert certificate.certify(folder, dataset_spec(str(data), "test"), progress=False)["status"] == "certified"
    return folder


def _logits(model, folder: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits


def test_push_then_load_with_plugin_and_remote_code_and_verify_the_repo(
    hub_server: HubServer, certified_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModel

    from hf_dft_head import DFTForMultiLabelClassification

    repo_id = f"{DEFAULT_USER}/dft-tiny"
    result = hub.push_checkpoint(certified_checkpoint, repo_id, backoff=0.01, progress=False)
    stored = hub_server.repo_files(repo_id)
    for name in ("config.json", "model.safetensors", "modeling.py", "configuration.py", "layers.py", "gale.py"):
        assert stored[name] == (certified_checkpoint / name).read_bytes(), name
    for name in ("tokenizer.json", certificate.CERTIFICATE_NAME, "argmaxability.png"):
        assert stored[name] == (certified_checkpoint / name).read_bytes(), name
    card = stored["README.md"].decode()
    assert "library_name: transformers" in card and "argmaxable_share_gold_label_sets" in card
    assert "every set of at most k = 3 labels" in card and "trust_remote_code=True" in card
    # One commit on top of the repo's initial one, and the reported sha is the head.
    commits = hub_server.repo_commits(repo_id)
    assert len(commits) == 2 and commits[0].sha == result.commit_sha == hub_server.repo_sha(repo_id)
    assert set(result.files) == set(stored) - {".gitattributes"}

    expected = _logits(
        DFTForMultiLabelClassification.from_pretrained(certified_checkpoint).eval(), certified_checkpoint
    )
    loaded = AutoModel.from_pretrained(repo_id).eval()
    assert type(loaded) is DFTForMultiLabelClassification
    assert torch.equal(_logits(loaded, certified_checkpoint), expected)

    # Remote code in a process that cannot import the plugin, with a fresh cache.
    environment = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "child_cache"), "HF_HOME": str(tmp_path / "child")}
    environment["HF_MODULES_CACHE"] = str(tmp_path / "child_modules")
    child = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_CHILD, repo_id, json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    module_name, logits_json = child.stdout.strip().splitlines()[-2:]
    assert module_name.startswith("transformers_modules")
    assert torch.equal(torch.tensor(json.loads(logits_json), dtype=torch.float64), expected.double())

    # verify on the repo id downloads a snapshot and recomputes everything.
    assert cli_main(["verify", repo_id, "--quiet"]) == 0


def test_uncertified_and_stale_checkpoints_are_refused_before_any_upload(
    hub_server: HubServer, certified_checkpoint: Path, tmp_path: Path
) -> None:
    uncertified = build_checkpoint(tmp_path / "uncertified")
    with pytest.raises(hub.PushError, match="no dft_certificate.json"):
        hub.push_checkpoint(uncertified, f"{DEFAULT_USER}/x", progress=False)

    stale = Path(shutil.copytree(certified_checkpoint, tmp_path / "stale"))
    tensors = load_file(stale / "model.safetensors")
    tensors["head.bias"][1] -= 0.25  # trained a bit more after certification
    save_file(tensors, stale / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(hub.PushError, match="stale or tampered") as refused:
        hub.push_checkpoint(stale, f"{DEFAULT_USER}/x", recheck_audit=False, progress=False)
    assert "model.safetensors: sha256 differs" in str(refused.value)

    tampered = Path(shutil.copytree(certified_checkpoint, tmp_path / "tampered"))
    path = tampered / certificate.CERTIFICATE_NAME
    edited = json.loads(path.read_text())
    edited["audit"]["gold"]["unargmaxable"] = 0
    path.write_text(json.dumps(edited))
    with pytest.raises(hub.PushError, match="audit.gold.unargmaxable"):
        hub.push_checkpoint(tampered, f"{DEFAULT_USER}/x", progress=False)
    assert hub_server.write_requests() == [] and not hub_server.repo_exists(f"{DEFAULT_USER}/x")


def test_no_token_and_foreign_namespace_are_clear_errors(
    hub_server: HubServer, certified_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_user("hf_test_bob_token", "bob")
    with pytest.raises(hub.PushError, match="owned by someone else"):
        hub.push_checkpoint(certified_checkpoint, "bob/dft", recheck_audit=False, progress=False)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(hub.PushError, match="No Hugging Face token found"):
        hub.push_checkpoint(certified_checkpoint, f"{DEFAULT_USER}/dft", recheck_audit=False, progress=False)
    assert hub_server.write_requests() == []

    assert cli_main(["push", str(certified_checkpoint), f"{DEFAULT_USER}/dft", "--skip-audit", "--quiet"]) == 1


def test_server_errors_are_retried_and_never_reported_as_success(
    hub_server: HubServer, certified_checkpoint: Path
) -> None:
    repo_id = f"{DEFAULT_USER}/flaky"
    options = {"recheck_audit": False, "backoff": 0.01, "progress": False}
    hub_server.fail_next(r"/commit/", status=500, count=3)
    with pytest.raises(hub.PushError, match="NOT published") as failed:
        hub.push_checkpoint(certified_checkpoint, repo_id, attempts=3, **options)
    assert "500" in str(failed.value)
    assert "model.safetensors" not in hub_server.repo_files(repo_id)
    assert len(hub_server.requests_matching(r"/commit/", method="POST")) == 3

    # One 500, then success: exactly one commit lands.
    hub_server.fail_next(r"/commit/", status=500, count=1)
    result = hub.push_checkpoint(certified_checkpoint, repo_id, **options)
    assert hub_server.repo_sha(repo_id) == result.commit_sha and len(hub_server.repo_commits(repo_id)) == 2

    # A lost response (the commit landed, the connection dropped): recognised, not committed twice.
    other = f"{DEFAULT_USER}/lost"
    hub_server.fail_next(r"/commit/", drop=True, when="after")
    result = hub.push_checkpoint(certified_checkpoint, other, **options)
    assert len(hub_server.repo_commits(other)) == 2 and hub_server.repo_sha(other) == result.commit_sha
    assert np.array_equal(
        np.frombuffer(hub_server.repo_files(other)["model.safetensors"], dtype=np.uint8),
        np.frombuffer((certified_checkpoint / "model.safetensors").read_bytes(), dtype=np.uint8),
    )
