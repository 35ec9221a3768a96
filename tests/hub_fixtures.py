"""Pytest fixtures that point the real ``huggingface_hub`` client (and transformers) at a loopback ``HubServer``.

Use: ``from hub_fixtures import hub_server_fixture  # noqa: F401`` in a test module (``tests/`` is on sys.path via
``conftest.py``), then take ``hub_server`` as a test argument. It yields a started ``hub_server.HubServer`` with the
user ``DEFAULT_USER`` (token ``DEFAULT_TOKEN``, also in ``HF_TOKEN``), a fresh ``HF_HOME`` / ``HF_HUB_CACHE`` under
the test's tmp dir, online mode (the suite's ``HF_HUB_OFFLINE=1`` is lifted for the test), and everything restored
afterwards.

Why setting ``HF_ENDPOINT`` is not enough in-process: ``huggingface_hub.constants`` reads it at import time, and
copies of it live on in ``HUGGINGFACE_CO_URL_TEMPLATE``, in the module-level ``HfApi`` behind
``huggingface_hub.create_repo`` & co., in the list of hosts that may receive the token, and in transformers' shared
``HfApi`` (created lazily, then kept). ``point_hub_client_at`` patches each of them with ``monkeypatch``. Subprocesses
started inside the test inherit the patched environment variables, so they reach the same server
(``test_hub_server.py`` checks both routes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubServer

DEFAULT_USER = "alice"
DEFAULT_TOKEN = "hf_test_alice_write_token"


def point_hub_client_at(endpoint: str, hf_home: Path, monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    """Redirect huggingface_hub (and transformers, if imported) in this process and its children to ``endpoint``.

    ``hf_home`` becomes HF_HOME (cache in ``hf_home/hub``; no stored token there); ``token`` goes to HF_TOKEN
    (``None`` removes it). Xet is disabled, offline mode and telemetry off. All changes are undone by ``monkeypatch``.
    """
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    endpoint = endpoint.rstrip("/")
    hub_cache = hf_home / "hub"
    hub_cache.mkdir(parents=True, exist_ok=True)
    environment = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_MODULES_CACHE": str(hf_home / "modules"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)

    # The constants module evaluated the variables at import: patch the values the client reads at call time.
    constant_values = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
    }
    for name, value in constant_values.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    # `huggingface_hub.create_repo`, `upload_folder`, `whoami`... are bound methods of one HfApi built at import.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    # The Authorization header is only forwarded to known Hub origins (computed at import).
    if hasattr(_http, "_HUB_ORIGINS") and hasattr(_http, "_url_origin"):
        monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(endpoint)})

    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None:
        # transformers keeps one HfApi (with the endpoint of its creation time) for push_to_hub: rebuild lazily.
        if hasattr(transformers_hub, "_hf_api"):
            monkeypatch.setattr(transformers_hub, "_hf_api", None)
        for module_name in ("transformers.utils.hub", "transformers.dynamic_module_utils", "transformers.file_utils"):
            module = sys.modules.get(module_name)
            if module is not None and hasattr(module, "HF_MODULES_CACHE"):
                monkeypatch.setattr(module, "HF_MODULES_CACHE", str(hf_home / "modules"))


@pytest.fixture(name="hub_server")
def hub_server_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started HubServer with user ``DEFAULT_USER`` (token ``DEFAULT_TOKEN`` in HF_TOKEN), the client pointed at
    it, and a fresh HF_HOME under ``tmp_path / "hf_home"``; stopped and restored after the test."""
    server = HubServer().start()
    try:
        server.add_user(DEFAULT_TOKEN, DEFAULT_USER)
        point_hub_client_at(server.url, tmp_path / "hf_home", monkeypatch, token=DEFAULT_TOKEN)
        yield server
    finally:
        server.stop()
