"""Publishing certified checkpoints to the Hugging Face Hub, and fetching them back for verification.

``hf-dft push CHECKPOINT user/repo [--private]``:

1. refuses, before any network call that writes, a checkpoint without a certificate, with a ``not_certified``
   certificate, or whose certificate no longer matches (weights, config or code changed after certification:
   *stale*; hashes, numbers or the figure edited: *tampered*). The check is :func:`certificate.verify_checkpoint`;
2. finds the token where ``huggingface_hub`` looks (``--token``, ``HF_TOKEN``, the stored login), with a clear
   error when there is none, and checks with ``whoami`` that the token may write to the repo's namespace;
3. renders the model card and uploads weights, config, remote-code files, tokenizer, certificate, card and figure
   in ONE commit (``create_repo`` + ``upload_folder`` of a staging folder);
4. retries network failures and 5xx/429 answers with exponential backoff. Before retrying an upload it asks the
   Hub whether the commit landed anyway (a lost response), so a retry never commits twice; after the last attempt
   it raises without claiming success. Success is declared only once the remote file list has been read back.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import certificate as certificates

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Top-level files never uploaded: training state and caches, not part of a published model.
IGNORED_SUFFIXES = (".pt", ".pth", ".ckpt", ".tmp", ".lock")
IGNORED_NAMES = ("optimizer.bin", "scheduler.bin", "trainer_state.json", "README.md")
CARD_NAME = "README.md"


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
    from huggingface_hub import get_token

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
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

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


def staged_files(checkpoint: Path) -> list[Path]:
    """Top-level files of ``checkpoint`` to publish (weights, config, code, tokenizer, certificate, figure, ...).

    Sub-folders (intermediate checkpoints), training state (``*.pt``, optimizer/scheduler) and hidden files are
    left out; the model card is rendered fresh.
    """
    return [
        path
        for path in sorted(checkpoint.iterdir())
        if path.is_file()
        and not path.name.startswith(".")
        and not path.name.endswith(IGNORED_SUFFIXES)
        and path.name not in IGNORED_NAMES
    ]


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
    local = {path.name: path for path in stage.iterdir()}
    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(repo_id, revision=info.sha, recursive=True)
        if hasattr(entry, "blob_id")
    }
    for name, path in local.items():
        entry = remote.get(name)
        if entry is None:
            return None
        lfs = getattr(entry, "lfs", None)
        if lfs is not None:
            if getattr(lfs, "sha256", None) != certificates.sha256_file(path):
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
    """Verify ``checkpoint``'s certificate, then publish it to ``repo_id`` in one commit.

    Args:
        checkpoint: a certified checkpoint folder.
        repo_id: ``"namespace/name"`` (or ``"name"``: the token's user namespace).
        private: create the repo private (an existing repo keeps its visibility).
        token: overrides HF_TOKEN / the stored login.
        attempts, backoff: retries of network / 5xx failures, waiting ``backoff * 2**i`` seconds.
        recheck_audit: recompute the audit figures before pushing (False checks hashes, G and P only).
        dataset: where the audit data lives on this machine, if not where it was at certification.
        card_options: extra keyword arguments of :func:`hf_dft_head.model_card.render_model_card`.

    Raises :class:`PushError` (nothing is uploaded when the refusal comes from the certificate, the token or the
    namespace) and never returns unless the commit is on the Hub.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from .model_card import render_model_card

    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise PushError(f"{checkpoint} is not a checkpoint folder.")
    try:
        recorded = certificates.read_certificate(checkpoint)
    except certificates.CertificateError as error:
        raise PushError(f"Refusing to push an uncertified checkpoint: {error}") from None
    if recorded.get("status") != "certified":
        reasons = "; ".join(recorded.get("reasons_not_certified") or []) or "status is not 'certified'"
        raise PushError(f"Refusing to push: the certificate says not certified ({reasons}).")
    verification = certificates.verify_checkpoint(
        checkpoint, recheck_audit=recheck_audit, dataset=dataset, progress=progress
    )
    if not verification.ok:
        listed = "\n  ".join(verification.mismatches)
        raise PushError(
            "Refusing to push: the certificate does not match the checkpoint (stale or tampered); re-run "
            f"`hf-dft certify` if the change is intended. Mismatches:\n  {listed}"
        )

    token = resolve_token(token)
    api = HfApi(token=token)
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
            f"Cannot push to {repo_id!r}: the namespace {namespace!r} is owned by someone else (the token belongs to "
            f"{user!r}, member of {sorted(n for n in namespaces if n != user) or 'no organisations'}). Nothing was "
            "uploaded."
        )

    with tempfile.TemporaryDirectory(prefix="hf_dft_push_") as staging:
        stage = Path(staging)
        for path in staged_files(checkpoint):
            shutil.copy2(path, stage / path.name)
        card = render_model_card(checkpoint, recorded, repo_id=repo_id, **(card_options or {}))
        card.save(stage / CARD_NAME)
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
                f"The upload to {repo_id} returned commit {commit}, but the repo's head does not hold the staged "
                "files: the push is not confirmed."
            )
        files = sorted(path.name for path in stage.iterdir())
    endpoint = api.endpoint.rstrip("/")
    return PushResult(repo_id, commit, f"{endpoint}/{repo_id}/commit/{commit}", files)


def download_checkpoint(repo_id: str, *, revision: str | None = None, token: str | None = None) -> Path:
    """Download a Hub repo (snapshot) into the Hugging Face cache and return its local folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token))
    except RepositoryNotFoundError:
        raise ValueError(f"{repo_id!r} is neither a local folder nor a Hub repo this token can read.") from None
    except HfHubHTTPError as error:
        raise ValueError(f"Could not download {repo_id!r}: {error}") from None


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_push_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``hf-dft push CHECKPOINT REPO_ID [--private] [--token T] [--skip-audit] ...``."""
    parser.add_argument("checkpoint", help="a certified checkpoint folder")
    parser.add_argument("repo_id", help="target Hub repo, namespace/name")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--retries", type=int, default=3, help="attempts per network step (default 3)")
    parser.add_argument("--dataset", default=None, help="where the certificate's audit data is, if moved")
    parser.add_argument(
        "--skip-audit", action="store_true", help="before pushing, check hashes, G and P only (not the audit figures)"
    )
    parser.add_argument("--base-model", default=None, help="base_model for the card metadata (a Hub id)")
    parser.add_argument("--card-dataset", action="append", default=None, help="Hub dataset id for the card")
    parser.add_argument("--license", default=None, help="license identifier for the card metadata")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_push(args: argparse.Namespace) -> int:
    """Run ``hf-dft push``; 0 on a confirmed commit, 1 when refused or failed (the message says why)."""
    card_options = {"base_model": args.base_model, "datasets": args.card_dataset, "license": args.license}
    try:
        result = push_checkpoint(
            args.checkpoint,
            args.repo_id,
            private=args.private,
            token=args.token,
            commit_message=args.commit_message,
            attempts=args.retries,
            recheck_audit=not args.skip_audit,
            dataset=args.dataset,
            card_options={key: value for key, value in card_options.items() if value},
            progress=not args.quiet,
        )
    except (PushError, ValueError) as error:
        print(f"hf-dft push: error: {error}", file=sys.stderr)
        return 1
    print(f"Pushed {len(result.files)} files to {result.repo_id} in commit {result.commit_sha}: {result.commit_url}")
    return 0
