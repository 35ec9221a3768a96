"""An attacker edits a certified checkpoint: verify must fail and name what changed, and push must upload nothing.

Every attack starts from a copy of one certified tiny checkpoint. "Re-hashed" attacks also write the edited file's
new sha256 into the certificate, as an uploader who controls every byte can: they must fail on what ``verify``
recomputes, never on the recorded hash.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hub_fixtures import DEFAULT_USER, hub_server_fixture  # noqa: F401  (the hub_server fixture)
from hub_server import HubServer
from safetensors.numpy import load_file, save_file
from test_certificate import build_checkpoint, write_dataset

from hf_dft_head import certificate, certificate_checks, hub
from hf_dft_head.audit import VerifierOptions, dataset_spec
from hf_dft_head.checkpoints import CERTIFICATE_NAME, sha256_file
from hf_dft_head.cli import main as cli_main


@pytest.fixture(scope="module")
def certified(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tamper")
    folder, data = build_checkpoint(root / "dft"), write_dataset(root / "gold.jsonl")
    # Radii for a seeded sample of 2 of the argmaxable sets the rule decides, so that a forged sample can be tried.
    options = VerifierOptions(radius_sample=2, radius_seed=1)
    assert (
        certificate.certify(folder, dataset_spec(str(data), "test"), options, progress=False)["status"] == "certified"
    )
    return folder


# ------------------------------------------------------------------------------------------------ attack helpers


def _certificate(folder: Path) -> dict:
    return json.loads((folder / CERTIFICATE_NAME).read_text())


def _write_certificate(folder: Path, payload: dict) -> None:
    (folder / CERTIFICATE_NAME).write_text(json.dumps(payload, indent=1))


def rehash(folder: Path, *names: str) -> None:
    """Write the current sha256 of ``names`` into the certificate (drop the entry of a file that is gone)."""
    payload = _certificate(folder)
    for name in names:
        if (folder / name).is_file():
            payload["files"][name] = sha256_file(folder / name)
        else:
            payload["files"].pop(name, None)
    _write_certificate(folder, payload)


def _edit_tensor(folder: Path, key: str, delta: float) -> None:
    tensors = load_file(folder / "model.safetensors")
    tensors[key].flat[0] += delta
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _edit_json(folder: Path, name: str, edit: Callable[[dict], None]) -> None:
    payload = json.loads((folder / name).read_text())
    edit(payload)
    (folder / name).write_text(json.dumps(payload, indent=2))


def weights_edited(folder: Path) -> None:
    _edit_tensor(folder, "head.weight", 0.5)


def weights_edited_rehashed(folder: Path) -> None:
    _edit_tensor(folder, "head.weight", 0.5)
    rehash(folder, "model.safetensors")


def encoder_changed_same_head_rehashed(folder: Path) -> None:
    tensors = load_file(folder / "model.safetensors")
    key = "encoder.encoder.layer.0.output.dense.weight"  # a layer every token passes through
    tensors[key] = tensors[key] * 1.5
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    rehash(folder, "model.safetensors")


def weights_renamed(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "weights.safetensors")


def weights_renamed_rehashed(folder: Path) -> None:
    weights_renamed(folder)
    rehash(folder, "model.safetensors", "weights.safetensors")


def extra_safetensors(folder: Path) -> None:
    shutil.copy(folder / "model.safetensors", folder / "model-00002-of-00002.safetensors")


def weights_copy_in_subfolder(folder: Path) -> None:
    (folder / "backup").mkdir()
    shutil.copy(folder / "model.safetensors", folder / "backup" / "model.safetensors")


def symlinked_weights(folder: Path) -> None:
    target = folder.parent / f"{folder.name}-outside.safetensors"
    shutil.move(folder / "model.safetensors", target)
    os.symlink(target, folder / "model.safetensors")


def symlinked_folder(folder: Path) -> None:
    outside = folder.parent / f"{folder.name}-outside"
    outside.mkdir()
    shutil.copy(folder / "model.safetensors", outside / "model.safetensors")
    os.symlink(outside, folder / "extra", target_is_directory=True)


def config_k_changed(folder: Path) -> None:
    _edit_json(folder, "config.json", lambda config: config.update(k=2))


def config_k_changed_rehashed(folder: Path) -> None:
    config_k_changed(folder)
    rehash(folder, "config.json")


def _swap_labels(config: dict) -> None:
    config["id2label"]["0"], config["id2label"]["1"] = config["id2label"]["1"], config["id2label"]["0"]
    config["label2id"] = {name: int(i) for i, name in config["id2label"].items()}


def id2label_changed(folder: Path) -> None:
    _edit_json(folder, "config.json", _swap_labels)


def id2label_changed_rehashed(folder: Path) -> None:
    id2label_changed(folder)
    rehash(folder, "config.json")


def code_changed_rehashed(folder: Path) -> None:
    path = folder / "layers.py"
    text = path.read_text()
    rolled = "torch.roll(self.gale(x.device, x.dtype), 1, dims=1).T"
    text = text.replace("z = fixed @ self.gale(x.device, x.dtype).T", f"z = fixed @ {rolled}")
    text = text.replace("z = dft_synthesis(fixed, self.num_labels)", f"z = fixed @ {rolled}")
    assert "torch.roll" in text
    path.write_text(text)
    rehash(folder, "layers.py")


def extra_code_file_rehashed(folder: Path) -> None:
    (folder / "evil.py").write_text("import os\n")
    rehash(folder, "evil.py")


def auto_map_elsewhere_rehashed(folder: Path) -> None:
    def edit(config: dict) -> None:
        config["auto_map"]["AutoModel"] = "mallory/evil--modeling.DFTForMultiLabelClassification"

    _edit_json(folder, "config.json", edit)
    rehash(folder, "config.json")


def custom_pipeline_rehashed(folder: Path) -> None:
    def edit(config: dict) -> None:
        config["custom_pipelines"] = {"multi-label-classification": {"impl": "mallory/p--pipe.P", "pt": []}}

    _edit_json(folder, "config.json", edit)
    rehash(folder, "config.json")


def tokenizer_code_rehashed(folder: Path) -> None:
    _edit_json(
        folder, "tokenizer_config.json", lambda c: c.update(auto_map={"AutoTokenizer": ["mallory/t--tok.T", None]})
    )
    rehash(folder, "tokenizer_config.json")


def tokenizer_vocabulary_shifted_rehashed(folder: Path) -> None:
    def shift(tokenizer: dict) -> None:
        vocabulary = tokenizer["model"]["vocab"]
        size = len(vocabulary)
        tokenizer["model"]["vocab"] = {token: (index + 1) % size for token, index in vocabulary.items()}

    _edit_json(folder, "tokenizer.json", shift)
    rehash(folder, "tokenizer.json")


def figure_replaced(folder: Path) -> None:
    with open(folder / "argmaxability.png", "ab") as handle:
        handle.write(b"\0")


def figure_replaced_rehashed(folder: Path) -> None:
    figure_replaced(folder)
    rehash(folder, "argmaxability.png")


def figure_hash_entry_removed(folder: Path) -> None:
    payload = _certificate(folder)
    del payload["files"]["argmaxability.png"]
    _write_certificate(folder, payload)


def tokenizer_hash_entry_removed(folder: Path) -> None:
    payload = _certificate(folder)
    del payload["files"]["tokenizer.json"]
    _write_certificate(folder, payload)


def certificate_counts_edited(folder: Path) -> None:
    payload = _certificate(folder)
    payload["audit"]["gold"]["argmaxable"] += 1
    _write_certificate(folder, payload)


def certificate_singular_value_edited(folder: Path) -> None:
    payload = _certificate(folder)
    payload["checks"]["projection"]["smallest_singular_value"] *= 1.01
    _write_certificate(folder, payload)


def certificate_guarantee_edited(folder: Path) -> None:
    payload = _certificate(folder)
    payload["guarantee"]["statement"] = payload["guarantee"]["statement"].replace("k = 3", "k = 5")
    payload["guarantee"]["k"] = 5
    _write_certificate(folder, payload)


def certificate_quality_edited(folder: Path) -> None:
    payload = _certificate(folder)
    payload["audit"]["quality"]["f1@5"] = 0.99
    _write_certificate(folder, payload)


def certificate_section_removed(folder: Path) -> None:
    payload = _certificate(folder)
    del payload["probe"]
    _write_certificate(folder, payload)


def certificate_from_another_version(folder: Path) -> None:
    payload = _certificate(folder)
    payload["package"]["version"] = "0.0.9"
    _write_certificate(folder, payload)


def remote_code_claim_edited(folder: Path) -> None:
    payload = _certificate(folder)
    payload["checks"]["remote_code"]["dtype_tolerance"] = 10.0
    _write_certificate(folder, payload)


def radius_sample_claimed_complete(folder: Path) -> None:
    """Claim that every rule-decided argmaxable set got its radius, where only a sample of 2 did."""
    payload = _certificate(folder)
    radius = payload["verifier"]["radius"]
    radius.update(computed_for="all", sample_size=radius["rule_decided_argmaxable_sets"], seed=None)
    radius["sampled_sets_sha256"] = None
    _write_certificate(folder, payload)


def radius_sample_seed_changed(folder: Path) -> None:
    """A consistent-looking edit: the options and the stated sample name seed 2, the figures stay those of seed 1."""
    payload = _certificate(folder)
    payload["options"]["radius_seed"] = 2
    payload["verifier"]["radius"]["seed"] = 2
    _write_certificate(folder, payload)


def rule_rejected_budget_edited(folder: Path) -> None:
    """The recorded options name another LP budget for rule-rejected sets than the one the audit ran with."""
    payload = _certificate(folder)
    payload["options"]["rule_rejected_rows"] = 64
    _write_certificate(folder, payload)


# (attack, what verify's mismatches must name)
ATTACKS = [
    (weights_edited, "file model.safetensors: sha256 differs"),
    (weights_edited_rehashed, "model outputs: the logits on the probe texts differ"),
    (encoder_changed_same_head_rehashed, "model outputs: the logits on the probe texts differ"),
    (weights_renamed, "file weights.safetensors: not bound"),
    (weights_renamed_rehashed, "Cannot load the weights"),
    (extra_safetensors, "file model-00002-of-00002.safetensors: not bound"),
    (weights_copy_in_subfolder, "file backup/model.safetensors: not bound"),
    (symlinked_weights, "file model.safetensors: a symbolic link"),
    (symlinked_folder, "file extra: a symbolic link"),
    (config_k_changed, "file config.json: sha256 differs"),
    (config_k_changed_rehashed, "config.json and the weights do not fit together"),
    (id2label_changed, "file config.json: sha256 differs"),
    (id2label_changed_rehashed, "audit.dataset.fingerprint_sha256"),
    (code_changed_rehashed, "code file layers.py: differs from the layers.py of the verifying package"),
    (extra_code_file_rehashed, "code file evil.py: not a module"),
    (auto_map_elsewhere_rehashed, "config.json: auto_map is"),
    (custom_pipeline_rehashed, "config.json: has custom_pipelines"),
    (tokenizer_code_rehashed, "tokenizer_config.json: has an auto_map"),
    (tokenizer_vocabulary_shifted_rehashed, "tokenizer: the token ids of the probe texts differ"),
    (figure_replaced, "file argmaxability.png: sha256 differs"),
    (figure_replaced_rehashed, "figure argmaxability.png: differs from the figure re-drawn"),
    (figure_hash_entry_removed, "file argmaxability.png: not bound"),
    (tokenizer_hash_entry_removed, "file tokenizer.json: not bound"),
    (certificate_counts_edited, "audit.gold.argmaxable: certificate says"),
    (certificate_singular_value_edited, "checks.projection.smallest_singular_value"),
    (certificate_guarantee_edited, "guarantee.k: certificate says 5"),
    (certificate_quality_edited, "audit.quality.f1@5"),
    (certificate_section_removed, "lacks the section(s) probe"),
    (certificate_from_another_version, "made by hf-dft-head '0.0.9'"),
    (remote_code_claim_edited, "checks.remote_code.dtype_tolerance"),
    (radius_sample_claimed_complete, 'verifier.radius.computed_for: certificate says "all", recomputed "sample"'),
    (radius_sample_seed_changed, "verifier.radius.sampled_sets_sha256"),
    (rule_rejected_budget_edited, "verifier.rule_rejected_rows: certificate says 4096, recomputed 64"),
]


@pytest.mark.parametrize(("attack", "named"), ATTACKS, ids=[attack.__name__ for attack, _ in ATTACKS])
def test_attack_fails_verify_and_push_uploads_nothing(
    attack, named: str, certified: Path, tmp_path: Path, hub_server: HubServer, capsys
) -> None:
    folder = Path(shutil.copytree(certified, tmp_path / "ckpt", symlinks=True))
    attack(folder)
    result = certificate.verify_checkpoint(folder, progress=False)
    assert result.outcome == "failed", result.summary()
    assert any(named in mismatch for mismatch in result.mismatches), result.summary()

    assert cli_main(["verify", str(folder), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "Traceback" not in out

    with pytest.raises(hub.PushError, match="Refusing to push"):
        hub.push_checkpoint(folder, f"{DEFAULT_USER}/attacked", progress=False)
    assert hub_server.write_requests() == [] and not hub_server.repo_exists(f"{DEFAULT_USER}/attacked")


def test_the_stated_radius_sample_is_recomputed_by_verify(certified: Path) -> None:
    """The fixture's certificate states a sample of 2 radii (seed 1) out of more; verify draws and computes the same."""
    written = _certificate(certified)
    radius = written["verifier"]["radius"]
    assert radius["computed_for"] == "sample" and radius["sample_size"] == 2 and radius["seed"] == 1
    assert radius["rule_decided_argmaxable_sets"] > 2 and len(radius["sampled_sets_sha256"]) == 64
    assert written["options"]["radius_sample"] == 2 and written["options"]["radius_seed"] == 1
    assert written["audit"]["gold"]["radius_computed"] + written["audit"]["predicted"]["radius_computed"] >= 2
    assert written["audit"]["gold"]["epsilon_argmaxable_share"] is None  # not every argmaxable set has a radius
    result = certificate.verify_checkpoint(certified, progress=False)
    assert result.outcome == "verified", result.summary()


def test_the_remote_code_probe_alone_catches_forged_code(
    certified: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the byte-identity check switched off, loading the shipped code in a separate process still catches a
    layer that applies a rolled G: the probe does not trust the installed package's view of the checkpoint."""
    folder = Path(shutil.copytree(certified, tmp_path / "ckpt"))
    code_changed_rehashed(folder)
    real = certificate_checks.check_code_files

    def identity_check_switched_off(checkpoint, files):
        summary, _ = real(checkpoint, files)
        return {**summary, "identical_to_package": True}, []

    monkeypatch.setattr(certificate_checks, "check_code_files", identity_check_switched_off)
    result = certificate.verify_checkpoint(folder, recheck_audit=False, progress=False)
    assert result.outcome == "failed"
    assert any("differs from [G|S](P h + c)" in m for m in result.mismatches), result.summary()
    assert any("on the probe texts" in m for m in result.mismatches)


def test_skip_audit_cannot_pass_as_verified(certified: Path, tmp_path: Path, hub_server: HubServer) -> None:
    """A consistent relabelling needs the data to be seen: --skip-audit must then say 'not fully verified', and a
    push with --skip-audit renders no audit or quality number into the card."""
    folder = Path(shutil.copytree(certified, tmp_path / "ckpt"))
    assert cli_main(["verify", str(folder), "--skip-audit", "--quiet"]) == 3
    result = hub.push_checkpoint(folder, f"{DEFAULT_USER}/skipped", recheck_audit=False, progress=False)
    card = hub_server.repo_files(result.repo_id)["README.md"].decode()
    quality = _certificate(folder)["audit"]["quality"]
    assert "argmaxable_share" not in card and f"{quality['p@1']:.4f}" not in card
    assert "Not shown: this card was rendered without re-checking" in card


def test_a_re_push_removes_files_the_certificate_does_not_bind(
    certified: Path, tmp_path: Path, hub_server: HubServer
) -> None:
    repo_id = f"{DEFAULT_USER}/repush"
    hub_server.create_repo(repo_id)
    hub_server.put_file(repo_id, "pytorch_model.bin", b"stale weights from an older upload")
    hub.push_checkpoint(certified, repo_id, recheck_audit=False, progress=False)
    stored = hub_server.repo_files(repo_id)
    assert "pytorch_model.bin" not in stored
    assert set(stored) - {".gitattributes", "README.md"} == set(_certificate(certified)["files"]) | {CERTIFICATE_NAME}


def test_verify_of_a_hub_repo_names_an_unbound_file_added_later(
    certified: Path, tmp_path: Path, hub_server: HubServer, capsys
) -> None:
    repo_id = f"{DEFAULT_USER}/added"
    hub.push_checkpoint(certified, repo_id, recheck_audit=False, progress=False)
    hub_server.put_file(repo_id, ".hidden/model.safetensors", (certified / "model.safetensors").read_bytes())
    assert cli_main(["verify", repo_id, "--skip-audit", "--quiet"]) == 1
    assert "file .hidden/model.safetensors: in the Hub repo but not bound" in capsys.readouterr().out
