"""Publishing certified checkpoints to the Hugging Face Hub, and fetching them back for verification.

``hf-dft push CHECKPOINT user/repo [--private]``:

1. refuses an invalid repo id before anything else;
2. copies the checkpoint's bound files (:mod:`hf_dft_head.checkpoints`) and its certificate into a staging folder
   and verifies *that folder* (:func:`certificate.verify_checkpoint`): a checkpoint without a certificate, with a
   ``not_certified`` one, or whose certificate does not match is refused before any network call that writes.
   What is uploaded is exactly the bytes that were verified;
3. finds the token where ``huggingface_hub`` looks (``--token``, ``HF_TOKEN``, the stored login), with a clear
   error when there is none, and checks with ``whoami`` that the token may write to the repo's namespace;
4. renders the model card from the verified certificate only (with ``recheck_audit=False`` the card carries no
   audit or quality numbers: they were not recomputed) and uploads the staged files, certificate and card in ONE
   commit that also deletes every other file of the repo (``.gitattributes`` excepted), so a re-push cannot leave
   stale, unbound weights behind;
5. retries network failures and 5xx/429 answers with exponential backoff. Before retrying an upload it asks the
   Hub whether the commit landed anyway (a lost response), so a retry never commits twice; after the last attempt
   it raises without claiming success. Success is declared only once the remote file list has been read back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from . import certificate as certificates
from .checkpoints import CARD_NAME, CERTIFICATE_NAME, bound_files, check_repo_id, read_card_inputs, sha256_file
from .model_card import render_model_card

logger = logging.getLogger(__name__)

T = TypeVar("T")


class PushError(RuntimeError):
    """A push was refused or failed; the message says why and whether anything reached the Hub."""


@dataclass
class PushResult:
    """A successful push: the repo, the commit sha and URL, and the files the commit holds."""

    repo_id: str
    commit_sha: str
    commit_url: str
    files: list[str]


def resolve_token(token: str | None = None) -> str:
    """The token to push with: ``token`` if given, else ``huggingface_hub.get_token()`` (HF_TOKEN, stored login).

    Raises :class:`PushError` when there is none, saying how to provide one.
    """
    token = token or get_token()
    if not token:
        raise PushError(
            "No Hugging Face token found: run `hf auth login`, set the HF_TOKEN environment variable, or pass "
            "--token. Nothing was uploaded."
        )
    return token


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _retryable(error: BaseException) -> bool:
    """Network failures and server-side answers (5xx, 429) are worth retrying; other HTTP errors are not."""
    if isinstance(error, HfHubHTTPError):
        status = _status(error)
        return status is None or status >= 500 or status == 429
    return isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError))


def with_retries(
    action: Callable[[], T],
    what: str,
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    landed: Callable[[], T | None] | None = None,
) -> T:
    """Run ``action``; on a retryable error wait ``backoff * 2**i`` s and try again, up to ``attempts`` times.

    ``landed``, when given, is asked after a failure whether the action took effect anyway (a lost response); a
    non-None answer is returned as the result instead of retrying. Non-retryable errors propagate at once; after
    the last attempt a :class:`PushError` names the action and the last error.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}.")
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - classified below, re-raised when not retryable
            if not _retryable(error):
                raise
            last = error
            logger.warning("%s failed (attempt %d of %d): %s", what, attempt + 1, attempts, error)
        if landed is not None:
            try:
                outcome = landed()
            except Exception as error:  # noqa: BLE001 - the Hub may still be unreachable: just retry
                logger.warning("Could not check whether %s landed: %s", what, error)
                outcome = None
            if outcome is not None:
                return outcome
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise PushError(f"{what} failed after {attempts} attempts: {last}") from last


def _http_error_message(error: BaseException, repo_id: str, user: str | None) -> str:
    status = _status(error)
    if status == 401:
        return (
            "The Hub rejected the token (401: invalid or expired); log in again with `hf auth login` or set HF_TOKEN."
        )
    if status == 403:
        return (
            f"The Hub refused to write to {repo_id!r} (403): the repo or its namespace is owned by someone else, or "
            f"the token is read-only" + (f" (the token belongs to {user!r})" if user else "") + "."
        )
    return f"The Hub answered {status}: {error}"


def stage_checkpoint(checkpoint: Path, stage: Path) -> list[str]:
    """Copy the bound files of ``checkpoint`` (sub-folders kept) and its certificate into ``stage``.

    Returns the staged relative paths. Symbolic links are not followed: verification of the stage names them.
    """
    inventory = bound_files(checkpoint)
    if inventory.symlinks:
        raise PushError(
            f"Refusing to push: {checkpoint} holds symbolic links ({', '.join(inventory.symlinks)}); a certificate "
            "binds regular files only. Replace each link with a copy of its target and certify again."
        )
    for name in [*inventory.files, CERTIFICATE_NAME]:
        target = stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint / name, target, follow_symlinks=False)
    return sorted([*inventory.files, CERTIFICATE_NAME])


def _git_blob_sha1(path: Path) -> str:
    """The git object id of a file (what the Hub reports for a regular, non-LFS file)."""
    digest = hashlib.sha1()
    digest.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remote_commit_with(api, repo_id: str, stage: Path, previous_sha: str | None) -> str | None:
    """The sha of the repo's head if it moved past ``previous_sha`` and holds exactly the staged files' bytes."""
    info = api.model_info(repo_id)
    if info.sha is None or info.sha == previous_sha:
        return None
    local = {path.relative_to(stage).as_posix(): path for path in stage.rglob("*") if path.is_file()}
    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(repo_id, revision=info.sha, recursive=True)
        if hasattr(entry, "blob_id")
    }
    if set(remote) - set(local) - {".gitattributes"}:
        return None  # files the push meant to delete are still there
    for name, path in local.items():
        entry = remote.get(name)
        if entry is None:
            return None
        lfs = getattr(entry, "lfs", None)
        if lfs is not None:
            if getattr(lfs, "sha256", None) != sha256_file(path):
                return None
        elif entry.blob_id != _git_blob_sha1(path):
            return None
    return info.sha


def push_checkpoint(
    checkpoint: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    attempts: int = 3,
    backoff: float = 1.0,
    recheck_audit: bool = True,
    dataset: str | None = None,
    card_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> PushResult:
    """Verify ``checkpoint`` as staged, then publish exactly the verified bytes to ``repo_id`` in one commit.

    Args:
        checkpoint: a certified checkpoint folder.
        repo_id: ``"namespace/name"`` (or ``"name"``: the token's user namespace).
        private: create the repo private (an existing repo keeps its visibility).
        token: overrides HF_TOKEN / the stored login.
        attempts, backoff: retries of network / 5xx failures, waiting ``backoff * 2**i`` seconds.
        recheck_audit: recompute the audit before pushing; ``False`` checks everything else, and the card then
            carries no audit or quality numbers.
        dataset: where the audit data lives on this machine, if not where it was at certification.
        card_options: extra keyword arguments of :func:`hf_dft_head.model_card.render_model_card`.

    Raises :class:`PushError` (nothing is uploaded when the refusal comes from the repo id, the certificate, the
    token or the namespace) and never returns unless the commit is on the Hub.
    """
    check_repo_id(repo_id)
    checkpoint = Path(checkpoint)
    recorded = _certified_record(checkpoint)
    with tempfile.TemporaryDirectory(prefix="hf_dft_push_") as staging:
        stage = Path(staging) / checkpoint.name
        _stage_verified(checkpoint, stage, recheck_audit=recheck_audit, dataset=dataset, progress=progress)
        inputs = {**read_card_inputs(stage), "certificate": recorded}
        card = render_model_card(**inputs, repo_id=repo_id, audit_verified=recheck_audit, **(card_options or {}))
        card.save(stage / CARD_NAME)
        token = resolve_token(token)
        api = HfApi(token=token)
        repo_id, user = _owned_repo_id(api, repo_id, attempts=attempts, backoff=backoff)
        commit = _upload_confirmed(
            api,
            repo_id,
            stage,
            user,
            private=private,
            commit_message=commit_message,
            attempts=attempts,
            backoff=backoff,
        )
        files = sorted(path.relative_to(stage).as_posix() for path in stage.rglob("*") if path.is_file())
    endpoint = api.endpoint.rstrip("/")
    return PushResult(repo_id, commit, f"{endpoint}/{repo_id}/commit/{commit}", files)


def _certified_record(checkpoint: Path) -> dict[str, Any]:
    """The certificate of ``checkpoint``; a :class:`PushError` when there is none or it says not certified."""
    if not checkpoint.is_dir():
        raise PushError(f"{checkpoint} is not a checkpoint folder.")
    try:
        recorded = certificates.read_certificate(checkpoint)
    except certificates.CertificateError as error:
        raise PushError(f"Refusing to push: {error}") from None
    if recorded.get("status") != "certified":
        reasons = "; ".join(recorded.get("reasons_not_certified") or []) or "status is not 'certified'"
        raise PushError(f"Refusing to push: the certificate says not certified ({reasons}).")
    return recorded


def _stage_verified(checkpoint: Path, stage: Path, *, recheck_audit: bool, dataset: str | None, progress: bool) -> None:
    """Copy the checkpoint's bound files to ``stage`` and verify the copy; a :class:`PushError` names mismatches."""
    stage_checkpoint(checkpoint, stage)
    verification = certificates.verify_checkpoint(
        stage, recheck_audit=recheck_audit, dataset=dataset, progress=progress, stop_early=True
    )
    if not verification.ok:
        listed = "\n  ".join(verification.mismatches)
        raise PushError(
            "Refusing to push: the certificate does not match the checkpoint (stale or tampered); re-run "
            f"`hf-dft certify` if the change is intended. Nothing was uploaded. Mismatches:\n  {listed}"
        )


def _owned_repo_id(api, repo_id: str, *, attempts: int, backoff: float) -> tuple[str, str]:
    """``(namespace/name, user)``: ``repo_id`` in the token's user namespace when it has none; refuses a namespace
    the token's user neither is nor belongs to."""
    try:
        identity = with_retries(lambda: api.whoami(), "whoami", attempts=attempts, backoff=backoff)
    except HfHubHTTPError as error:
        raise PushError(_http_error_message(error, repo_id, None) + " Nothing was uploaded.") from None
    user = identity.get("name")
    namespaces = {user} | {org.get("name") for org in identity.get("orgs", []) if isinstance(org, dict)}
    if "/" not in repo_id:
        repo_id = f"{user}/{repo_id}"
    namespace = repo_id.split("/")[0]
    if namespace not in namespaces:
        raise PushError(
            f"Cannot push to {repo_id!r}: the namespace {namespace!r} is owned by someone else (the token belongs "
            f"to {user!r}, member of {sorted(n for n in namespaces if n != user) or 'no organisations'}). Nothing "
            "was uploaded."
        )
    return repo_id, user


def _upload_confirmed(
    api,
    repo_id: str,
    stage: Path,
    user: str,
    *,
    private: bool,
    commit_message: str | None,
    attempts: int,
    backoff: float,
) -> str:
    """Create the repo if needed and upload ``stage`` as one commit replacing everything; the commit's sha, once the
    repo's head is seen to hold exactly the staged files."""
    try:
        with_retries(
            lambda: api.create_repo(repo_id, private=private, exist_ok=True),
            f"creating {repo_id}",
            attempts=attempts,
            backoff=backoff,
        )
        previous = with_retries(
            lambda: api.model_info(repo_id).sha, f"reading {repo_id}", attempts=attempts, backoff=backoff
        )
        commit = with_retries(
            lambda: (
                api.upload_folder(
                    repo_id=repo_id,
                    folder_path=stage,
                    commit_message=commit_message or "Upload certified DFT-head checkpoint (hf-dft push)",
                    # Everything else in the repo goes: a re-push leaves no stale, unbound file behind.
                    delete_patterns="*",
                ).oid
            ),
            f"uploading to {repo_id}",
            attempts=attempts,
            backoff=backoff,
            landed=lambda: _remote_commit_with(api, repo_id, stage, previous),
        )
        confirmed = _remote_commit_with(api, repo_id, stage, previous)
    except HfHubHTTPError as error:
        raise PushError(_http_error_message(error, repo_id, user) + " The push did not complete.") from None
    except PushError as error:
        raise PushError(f"{error}. The checkpoint was NOT published to {repo_id}.") from error.__cause__
    if confirmed is None or confirmed != commit:
        raise PushError(
            f"The upload to {repo_id} returned commit {commit}, but the repo's head does not hold exactly the "
            "staged files: the push is not confirmed."
        )
    return commit
