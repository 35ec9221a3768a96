"""The loopback Hub server against the REAL huggingface_hub client and transformers.

Each test gets a fresh server and a fresh HF cache (``hub_server`` fixture). Independent references: file bytes
written by the test, git blob ids from the client's own ``sha.git_hash``, tensors saved by the test, and the
server's storage read through its accessors (not through HTTP).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import torch
from hub_fixtures import DEFAULT_TOKEN, DEFAULT_USER, hub_server_fixture  # noqa: F401
from hub_server import HubServer, iter_commit_operations
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    ModelCardData,
    constants,
    create_repo,
    hf_hub_download,
    metadata_update,
    snapshot_download,
    upload_file,
    whoami,
)
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils.sha import git_hash
from safetensors.torch import load_file, save_file

BOB_TOKEN = "hf_test_bob_write_token"


def _status(error: BaseException) -> int:
    """HTTP status carried by a huggingface_hub HTTP error."""
    assert isinstance(error, HfHubHTTPError), f"expected an HfHubHTTPError, got {type(error).__name__}: {error}"
    return error.response.status_code


def _write_checkpoint_folder(folder: Path, weight_numel: int = 2**20) -> dict[str, bytes]:
    """A small checkpoint-like folder: JSON config, nested text file, real safetensors weights. Returns its files."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("nested file\n")
    generator = torch.Generator().manual_seed(0)
    save_file({"weight": torch.randn(weight_numel, generator=generator)}, str(folder / "model.safetensors"))
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_client_in_process_and_subprocess_both_reach_the_server(hub_server: HubServer, tmp_path: Path) -> None:
    # Module-level functions use an HfApi built at import time: the fixture must have re-pointed it.
    assert constants.ENDPOINT == hub_server.url
    create_repo(f"{DEFAULT_USER}/reach")
    upload_file(path_or_fileobj=b"from the parent", path_in_repo="hello.txt", repo_id=f"{DEFAULT_USER}/reach")
    assert [r.status for r in hub_server.requests_matching(r"^/api/repos/create$")] == [200]
    assert hub_server.repo_files(f"{DEFAULT_USER}/reach")["hello.txt"] == b"from the parent"

    # A child process imports huggingface_hub afresh: the patched environment alone must get it here.
    script = (
        "from huggingface_hub import constants, hf_hub_download, whoami\n"
        "print(constants.ENDPOINT)\n"
        "print(whoami()['name'])\n"
        f"print(open(hf_hub_download('{DEFAULT_USER}/reach', 'hello.txt')).read())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [hub_server.url, DEFAULT_USER, "from the parent"]
    assert str(tmp_path / "hf_home") in os.environ["HF_HUB_CACHE"]


def test_whoami_create_repo_private_flag_and_visibility(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_server.add_user(BOB_TOKEN, "bob", orgs=["lab"])
    assert whoami()["name"] == DEFAULT_USER
    assert whoami(token=DEFAULT_TOKEN)["auth"]["accessToken"]["role"] == "write"
    assert whoami(token=BOB_TOKEN)["orgs"][0]["name"] == "lab"

    api = HfApi()
    url = create_repo(f"{DEFAULT_USER}/secret", private=True)
    assert url.repo_id == f"{DEFAULT_USER}/secret"
    create_repo(f"{DEFAULT_USER}/open", private=False)
    assert hub_server.is_private(f"{DEFAULT_USER}/secret") and not hub_server.is_private(f"{DEFAULT_USER}/open")
    assert api.model_info(f"{DEFAULT_USER}/secret").private is True
    assert api.model_info(f"{DEFAULT_USER}/open", token=BOB_TOKEN).private is False

    # A private repo is invisible to another user and to anonymous requests, as on the Hub.
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{DEFAULT_USER}/secret", token=BOB_TOKEN)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{DEFAULT_USER}/secret", token=False)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{DEFAULT_USER}/secret", ".gitattributes", token=BOB_TOKEN)
    api.update_repo_settings(f"{DEFAULT_USER}/secret", private=False)
    assert api.model_info(f"{DEFAULT_USER}/secret", token=BOB_TOKEN).private is False
    api.delete_repo(f"{DEFAULT_USER}/secret")
    assert not hub_server.repo_exists(f"{DEFAULT_USER}/secret")

    # Creating an existing repo is a 409 unless exist_ok; a member may create in its org.
    with pytest.raises(HfHubHTTPError) as conflict:
        create_repo(f"{DEFAULT_USER}/open")
    assert _status(conflict.value) == 409
    assert create_repo(f"{DEFAULT_USER}/open", exist_ok=True).repo_id == f"{DEFAULT_USER}/open"
    create_repo("lab/shared", token=BOB_TOKEN)
    assert hub_server.repo_exists("lab/shared")
    assert hub_server.repo_commits("lab/shared")[0].author == "lab"


def test_upload_folder_info_download_and_snapshot(hub_server: HubServer, tmp_path: Path) -> None:
    repo_id = f"{DEFAULT_USER}/ckpt"
    # 2.75M float32 = 11 MB: above the real Hub's 10 MB LFS threshold; this server takes it as a regular upload.
    files = _write_checkpoint_folder(tmp_path / "ckpt", weight_numel=2_750_000)
    assert len(files["model.safetensors"]) > 10 * 2**20

    api = HfApi()
    create_repo(repo_id)
    commit = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "ckpt", commit_message="add checkpoint")
    expected_paths = sorted([*files, ".gitattributes"])

    assert commit.oid == hub_server.repo_sha(repo_id)
    stored = hub_server.repo_files(repo_id)
    assert {path: stored[path] for path in files} == files
    assert hub_server.repo_commits(repo_id)[0].title == "add checkpoint"

    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == commit.oid
    assert sorted(s.rfilename for s in info.siblings) == expected_paths
    for sibling in info.siblings:
        if sibling.rfilename in files:
            assert sibling.size == len(files[sibling.rfilename])
            assert sibling.blob_id == git_hash(files[sibling.rfilename])
    assert sorted(api.list_repo_files(repo_id)) == expected_paths
    top_level = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(repo_id)}
    assert top_level == {
        ".gitattributes": "RepoFile",
        "config.json": "RepoFile",
        "model.safetensors": "RepoFile",
        "notes": "RepoFolder",
    }

    weights_path = Path(hf_hub_download(repo_id, "model.safetensors"))
    assert weights_path.is_relative_to(tmp_path / "hf_home" / "hub")
    assert commit.oid in weights_path.parts  # snapshots/<sha>/...: the X-Repo-Commit header was understood
    assert weights_path.read_bytes() == files["model.safetensors"]
    original = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert torch.equal(load_file(str(weights_path))["weight"], original["weight"])

    snapshot = Path(snapshot_download(repo_id, cache_dir=tmp_path / "other_cache"))
    assert snapshot.name == commit.oid
    assert {p.relative_to(snapshot).as_posix(): p.read_bytes() for p in snapshot.rglob("*") if p.is_file()} == stored


def test_revisions_keep_old_content_and_unchanged_uploads_make_no_commit(hub_server: HubServer) -> None:
    repo_id = f"{DEFAULT_USER}/history"
    api = HfApi()
    create_repo(repo_id)
    first = api.create_commit(
        repo_id,
        [CommitOperationAdd("config.json", b'{"v": 1}'), CommitOperationAdd("old.txt", b"going away")],
        commit_message="v1",
    )
    second = api.create_commit(
        repo_id,
        [CommitOperationAdd("config.json", b'{"v": 2}'), CommitOperationDelete("old.txt")],
        commit_message="v2",
    )
    assert second.oid != first.oid
    assert api.model_info(repo_id).sha == second.oid
    assert api.model_info(repo_id, revision=first.oid).sha == first.oid
    assert [c.title for c in api.list_repo_commits(repo_id)] == ["v2", "v1", "initial commit"]
    assert [c.commit_id for c in api.list_repo_commits(repo_id)][:2] == [second.oid, first.oid]
    assert api.list_repo_refs(repo_id).branches[0].target_commit == second.oid

    assert Path(hf_hub_download(repo_id, "config.json")).read_bytes() == b'{"v": 2}'
    assert Path(hf_hub_download(repo_id, "config.json", revision=first.oid)).read_bytes() == b'{"v": 1}'
    assert Path(hf_hub_download(repo_id, "old.txt", revision=first.oid)).read_bytes() == b"going away"
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "config.json"]
    assert sorted(api.list_repo_files(repo_id, revision=first.oid)) == [".gitattributes", "config.json", "old.txt"]
    assert not api.file_exists(repo_id, "old.txt") and api.file_exists(repo_id, "old.txt", revision=first.oid)
    old_snapshot = Path(snapshot_download(repo_id, revision=first.oid))
    assert (old_snapshot / "old.txt").read_bytes() == b"going away"

    # Re-uploading identical bytes: preupload reports the remote blob id, the client sees no change, no commit.
    commits_before = len(hub_server.requests_matching(r"/commit/main$"))
    unchanged = upload_file(path_or_fileobj=b'{"v": 2}', path_in_repo="config.json", repo_id=repo_id)
    assert unchanged.oid == second.oid
    assert len(hub_server.requests_matching(r"/commit/main$")) == commits_before

    # A stale parent_commit is refused (412) and changes nothing.
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(repo_id, [CommitOperationAdd("x", b"x")], commit_message="late", parent_commit=first.oid)
    assert _status(stale.value) == 412
    assert hub_server.repo_sha(repo_id) == second.oid


def test_other_namespace_and_read_token_get_403_and_nothing_changes(hub_server: HubServer) -> None:
    hub_server.add_user(BOB_TOKEN, "bob")
    hub_server.add_user("hf_test_alice_read_token", DEFAULT_USER, role="read")
    create_repo("bob/theirs", token=BOB_TOKEN)
    before = hub_server.repo_files("bob/theirs")

    with pytest.raises(HfHubHTTPError) as create_error:
        create_repo("bob/mine-now")
    assert _status(create_error.value) == 403
    assert 'namespace "bob"' in str(create_error.value)
    assert not hub_server.repo_exists("bob/mine-now")

    # exist_ok=True swallows the 403 of create (the repo is public and exists); the push itself must then fail.
    create_repo("bob/theirs", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as push_error:
        upload_file(path_or_fileobj=b"intruder", path_in_repo="x.txt", repo_id="bob/theirs")
    assert _status(push_error.value) == 403
    with pytest.raises(HfHubHTTPError) as read_only:
        upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="bob/theirs", token="hf_test_alice_read_token")
    assert _status(read_only.value) == 403
    assert hub_server.repo_files("bob/theirs") == before
    assert hub_server.requests_matching(r"/commit/", method="POST") == []
    assert [r.user for r in hub_server.requests_matching(r"/preupload/")] == [DEFAULT_USER, DEFAULT_USER]


def test_missing_or_invalid_token(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    create_repo(f"{DEFAULT_USER}/guarded")
    sha = hub_server.repo_sha(f"{DEFAULT_USER}/guarded")
    monkeypatch.delenv("HF_TOKEN")

    with pytest.raises(LocalTokenNotFoundError):
        whoami()
    with pytest.raises(HfHubHTTPError) as create_error:
        create_repo(f"{DEFAULT_USER}/anonymous")
    assert _status(create_error.value) == 401
    # Over https the client would call this 401 a RepositoryNotFoundError (its URL regex wants https://); here it
    # stays an HfHubHTTPError with status 401: code should check the status, which works on both.
    with pytest.raises(HfHubHTTPError) as push_error:
        upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=f"{DEFAULT_USER}/guarded")
    assert _status(push_error.value) == 401

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_known_token")
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        whoami()
    with pytest.raises(HfHubHTTPError) as bad_token:
        create_repo(f"{DEFAULT_USER}/anonymous")
    assert _status(bad_token.value) == 401
    assert "Invalid credentials" in str(bad_token.value)

    assert hub_server.repo_sha(f"{DEFAULT_USER}/guarded") == sha
    assert not hub_server.repo_exists(f"{DEFAULT_USER}/anonymous")
    assert {r.status for r in hub_server.write_requests()[1:]} == {401}


def test_injected_failures_on_commit_leave_the_repo_unchanged(hub_server: HubServer) -> None:
    repo_id = f"{DEFAULT_USER}/flaky"
    create_repo(repo_id)
    sha = hub_server.repo_sha(repo_id)
    files = hub_server.repo_files(repo_id)

    rule = hub_server.fail_next(r"/commit/", status=500)
    with pytest.raises(HfHubHTTPError) as server_error:
        upload_file(path_or_fileobj=b"payload", path_in_repo="w.bin", repo_id=repo_id)
    assert _status(server_error.value) == 500
    assert rule.remaining == 0
    assert hub_server.repo_sha(repo_id) == sha and hub_server.repo_files(repo_id) == files

    hub_server.fail_next(r"/commit/", drop=True)
    with pytest.raises(httpx2.RemoteProtocolError):
        upload_file(path_or_fileobj=b"payload", path_in_repo="w.bin", repo_id=repo_id)
    assert hub_server.repo_sha(repo_id) == sha
    injected = [r for r in hub_server.requests if r.injected]
    assert [(r.status, r.dropped) for r in injected] == [(500, False), (None, True)]
    # The dropped request's body was read and logged: the NDJSON commit carried the file.
    lines = list(iter_commit_operations(injected[1].body))
    assert [line["key"] for line in lines] == ["header", "file"] and lines[1]["value"]["path"] == "w.bin"

    # A lost response: the commit lands, the client still sees a failure (retrying blindly would commit twice).
    hub_server.fail_next(r"/commit/", drop=True, when="after")
    with pytest.raises(httpx2.RemoteProtocolError):
        upload_file(path_or_fileobj=b"payload", path_in_repo="w.bin", repo_id=repo_id)
    assert hub_server.repo_files(repo_id)["w.bin"] == b"payload"
    assert HfApi().model_info(repo_id).sha == hub_server.repo_sha(repo_id) != sha


def test_preupload_5xx_is_retried_by_the_client(hub_server: HubServer) -> None:
    repo_id = f"{DEFAULT_USER}/retry"
    create_repo(repo_id)
    hub_server.fail_next(r"/preupload/", status=503, count=1, method="POST")
    upload_file(path_or_fileobj=b"eventually", path_in_repo="f.txt", repo_id=repo_id)  # client waits 1 s, retries
    assert [r.status for r in hub_server.requests_matching(r"/preupload/")] == [503, 200]
    assert hub_server.repo_files(repo_id)["f.txt"] == b"eventually"


def test_upload_with_xet_enabled_client_still_lands_in_one_commit(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real users have hf_xet installed: upload_folder then takes the pipelined route, which must also work here
    # because preupload answers "regular" for every file.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.delenv("HF_HUB_DISABLE_XET")
    files = _write_checkpoint_folder(tmp_path / "ckpt")
    create_repo(f"{DEFAULT_USER}/xet")
    HfApi().upload_folder(repo_id=f"{DEFAULT_USER}/xet", folder_path=tmp_path / "ckpt")
    stored = hub_server.repo_files(f"{DEFAULT_USER}/xet")
    assert {path: stored[path] for path in files} == files
    assert len(hub_server.repo_commits(f"{DEFAULT_USER}/xet")) == 2


@pytest.mark.parametrize("round_number", [1, 2])
def test_transformers_push_to_hub_and_from_pretrained(hub_server: HubServer, round_number: int) -> None:
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel
    from transformers.utils import hub as transformers_hub

    # transformers keeps one HfApi once created: in round 2 it was built against round 1's server (another port).
    assert transformers_hub.hf_api().endpoint == hub_server.url
    torch.manual_seed(round_number)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=100
    )
    model = BertModel(config).eval()
    model.push_to_hub(f"{DEFAULT_USER}/tiny-bert")
    assert {"config.json", "model.safetensors"} <= set(hub_server.repo_files(f"{DEFAULT_USER}/tiny-bert"))

    loaded_config = AutoConfig.from_pretrained(f"{DEFAULT_USER}/tiny-bert")
    assert (loaded_config.hidden_size, loaded_config.intermediate_size, loaded_config.vocab_size) == (32, 37, 100)
    loaded = AutoModel.from_pretrained(f"{DEFAULT_USER}/tiny-bert").eval()
    assert type(loaded) is BertModel
    original_state = model.state_dict()
    assert all(torch.equal(tensor, original_state[name]) for name, tensor in loaded.state_dict().items())
    input_ids = torch.tensor([[1, 5, 7, 42, 2]])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids).last_hidden_state, model(input_ids).last_hidden_state)
    assert hub_server.requests_matching(r"/resolve/[0-9a-f]{40}/model\.safetensors$", method="GET")


def test_model_card_push_metadata_update_and_yaml_validation(hub_server: HubServer) -> None:
    repo_id = f"{DEFAULT_USER}/carded"
    create_repo(repo_id)
    card = ModelCard.from_template(
        ModelCardData(license="mit", tags=["dft-head"], library_name="transformers"), model_description="A card."
    )
    card.push_to_hub(repo_id)
    assert hub_server.repo_files(repo_id)["README.md"].decode() == str(card)
    assert hub_server.requests_matching(r"^/api/validate-yaml$", method="POST")

    metadata_update(repo_id, {"tags": ["dft-head", "certified"]}, overwrite=True)
    reloaded = ModelCard.load(repo_id)
    assert reloaded.data.tags == ["dft-head", "certified"]
    assert reloaded.data.license == "mit"
    assert len(hub_server.repo_commits(repo_id)) == 3

    # An unclosed metadata block: the server's 400 becomes the client's ValueError, and nothing is committed.
    sha = hub_server.repo_sha(repo_id)
    with pytest.raises(ValueError, match="Invalid metadata"):
        upload_file(path_or_fileobj=b"---\nlicense: mit\n", path_in_repo="README.md", repo_id=repo_id)
    assert hub_server.repo_sha(repo_id) == sha


def test_server_api_without_http() -> None:
    with HubServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        server.create_repo("carol/seeded", private=True)
        assert set(server.repo_files("carol/seeded")) == {".gitattributes"}
        assert server.is_private("carol/seeded") and len(server.repo_commits("carol/seeded")) == 1
        with pytest.raises(ValueError, match="already exists"):
            server.create_repo("carol/seeded")
        with pytest.raises(ValueError, match="namespace/name"):
            server.create_repo("no-namespace")
        with pytest.raises(ValueError, match="count"):
            server.fail_next("/x", count=0)
        with pytest.raises(ValueError, match="status"):
            server.fail_next("/x", status=200)
        with pytest.raises(KeyError):
            server.repo_sha("carol/seeded", revision="0" * 40)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
