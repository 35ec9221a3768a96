"""A loopback, in-memory Hugging Face Hub-compatible HTTP server for the test suite.

The real Hub cannot be reached from the test machines. Pointing the real ``huggingface_hub`` client at this server
(``HF_ENDPOINT``; see ``tests/hub_fixtures.py`` for the in-process patching that requires) lets tests run real
``create_repo`` / ``upload_folder`` / ``push_to_hub`` / ``hf_hub_download`` / ``from_pretrained`` calls. Standard
library only, so it can run anywhere the tests run.

Public API
----------
``server = HubServer(host="127.0.0.1", port=0)``; ``server.start()`` (returns ``server``), ``server.stop()``; also a
context manager. ``server.url`` is ``"http://127.0.0.1:PORT"`` once started.

Users and tokens
    ``add_user(token, name, orgs=(), role="write")``: requests carrying ``Authorization: Bearer <token>`` act as
    ``name``. A user may write to repos in its own namespace and in ``orgs``; a ``role="read"`` token may not write.

Repos (the accessors all take ``repo_type="model"``; revisions are branch names or commit shas)
    ``create_repo(repo_id, private=False)`` seeds a repo directly (no HTTP); ``repo_exists(repo_id)``;
    ``repo_files(repo_id, revision="main") -> dict[path, bytes]``; ``repo_sha(repo_id, revision="main") -> str``;
    ``repo_commits(repo_id, revision="main") -> list[CommitRecord]`` (newest first); ``is_private(repo_id)``.

Failure injection
    ``fail_next(path_regex, status=500, count=1, method=None, drop=False, when="before") -> FailureRule``: the
    next ``count`` requests whose URL path (as sent, query excluded) matches ``re.search(path_regex, path)`` (and
    ``method``, if given) answer ``status`` with a JSON error, or, with ``drop=True``, get the connection closed
    without any response. ``when="before"`` fails before the request is handled (nothing changes on the server);
    ``when="after"`` handles it first (e.g. the commit lands) and then fails: a lost response.
    ``clear_failures()`` removes the rules still pending. Measured client behaviour: a 500 or a dropped connection
    on ``/commit/`` is not retried (``HfHubHTTPError`` / ``httpx2.RemoteProtocolError``); 5xx and drops on
    ``/preupload/`` are retried with backoff (1 s, 2 s, ...), so keep those counts small in fast tests.

Request log
    ``requests -> list[RecordedRequest]`` (a copy, oldest first; each with ``method``, ``path``, ``query``,
    ``headers``, ``body``, ``user``, ``status``, ``injected``, ``dropped``); ``requests_matching(path_regex,
    method=None)``; ``clear_requests()``; ``write_requests()`` lists the requests that could change a repo
    (repo create/delete/settings, preupload, commit), e.g. to assert that nothing was uploaded;
    ``iter_commit_operations(record.body)`` decodes a logged commit's NDJSON lines.

What the server does (the routes the client uses; measured with huggingface_hub 2.4 / transformers 5.23)
    ``GET /api/whoami-v2``; ``POST /api/repos/create`` (``visibility``/``private``; 409 if it exists);
    ``DELETE /api/repos/delete``; ``PUT /api/{type}s/{id}/settings``; ``POST /api/validate-yaml``;
    ``POST /api/{type}s/{id}/preupload/{rev}`` (always ``uploadMode: "regular"``, so the client never goes to
    LFS or Xet; regular uploads work for any size); ``POST /api/{type}s/{id}/commit/{rev}`` (NDJSON: header, file,
    deletedFile, deletedFolder; ``parentCommit`` is checked, 412 on mismatch); ``GET /api/{type}s/{id}`` and
    ``.../revision/{rev}`` (``sha``, ``siblings``, ``private``); ``GET .../tree/{rev}[/{path}]``; ``GET .../refs``;
    ``GET .../commits/{rev}``; ``HEAD``/``GET /[{type}s/]{id}/resolve/{rev}/{path}`` (``ETag`` = git blob sha1,
    ``X-Repo-Commit``, single ``Range``). Errors carry the ``X-Error-Code`` / ``X-Error-Message`` headers the
    client maps to its exceptions (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).

Auth rules (modelled on the real Hub): a write without a token answers 401; an unknown token answers 401 with
"Invalid credentials in Authorization header"; a write into another user's namespace (or with a read token) answers
403 with a JSON ``error``; a private repo is invisible (401 without a token, 404 with someone else's) and reads
as ``RepoNotFound``. Note: over plain http the client maps the 401 of a token-less push to ``HfHubHTTPError``
(status 401), where over https it raises its subclass ``RepositoryNotFoundError``; check
``err.response.status_code``.

Not implemented: LFS/Xet transfers, pull requests (``create_pr`` answers 400), branches and tags other than
``main``, ids without a namespace, ``cardData`` parsing of the README front matter, pagination (one page).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
# What the real Hub puts in a new repo's first commit (shortened: the patterns a model repo needs).
INITIAL_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.h5 filter=lfs diff=lfs merge=lfs -text\n"
)
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob with ``content`` (what the Hub reports as a regular file's ``oid``/ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclasses.dataclass(frozen=True)
class CommitRecord:
    """One commit: its sha, parent sha (``None`` for the first), title, description, author, date and the full
    file tree after the commit (path -> bytes)."""

    sha: str
    parent: str | None
    title: str
    description: str
    author: str
    date: str
    files: dict[str, bytes]


@dataclasses.dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, CommitRecord] = dataclasses.field(default_factory=dict)
    branches: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


@dataclasses.dataclass
class RecordedRequest:
    """One request as the server saw it. ``status`` is what was answered (``None`` when the connection was
    dropped); ``injected`` says a ``fail_next`` rule decided the answer; ``user`` is the token's user or ``None``."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    user: str | None
    status: int | None = None
    injected: bool = False
    dropped: bool = False


@dataclasses.dataclass
class FailureRule:
    """A pending ``fail_next`` rule; ``remaining`` counts down as matching requests arrive."""

    path_regex: str
    status: int
    remaining: int
    method: str | None
    drop: bool
    when: str

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and re.search(self.path_regex, path) is not None
        )


@dataclasses.dataclass
class _User:
    name: str
    orgs: tuple[str, ...]
    role: str


class HubError(Exception):
    """An HTTP error answer: status, the ``X-Error-Code`` (or ``None``) and a message (JSON ``error`` field and
    ``X-Error-Message`` header)."""

    def __init__(self, status: int, message: str, error_code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.extra = extra  # more JSON fields of the answer


class _Response:
    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> _Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


class HubServer:
    """The server; see the module docstring for the API."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._address = (host, port)
        self._lock = threading.RLock()
        self._users: dict[str, _User] = {}
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._failures: list[FailureRule] = []
        self._log: list[RecordedRequest] = []
        self._commit_counter = 0
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> HubServer:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("HubServer already started")
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = http.server.ThreadingHTTPServer(self._address, handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to use as ``HF_ENDPOINT``."""
        if self._httpd is None:
            raise RuntimeError("HubServer not started: call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ----------------------------------------------------------------- users
    def add_user(self, token: str, name: str, orgs: tuple[str, ...] | list[str] = (), role: str = "write") -> None:
        """Make ``token`` authenticate as ``name``, member of ``orgs``; ``role`` is ``"write"`` or ``"read"``."""
        if role not in ("write", "read"):
            raise ValueError(f"role must be 'write' or 'read', got {role!r}")
        if not _NAME_PATTERN.match(name):
            raise ValueError(f"name {name!r} is not a valid Hub user name")
        with self._lock:
            self._users[token] = _User(name=name, orgs=tuple(orgs), role=role)

    # ----------------------------------------------------------------- failure injection
    def fail_next(
        self,
        path_regex: str,
        status: int = 500,
        count: int = 1,
        method: str | None = None,
        drop: bool = False,
        when: str = "before",
    ) -> FailureRule:
        """Make the next ``count`` requests matching ``path_regex`` (and ``method``) fail; see the module docstring."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', got {when!r}")
        if not drop and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        rule = FailureRule(path_regex, status, count, method.upper() if method else None, drop, when)
        with self._lock:
            self._failures.append(rule)
        return rule

    def clear_failures(self) -> None:
        """Forget all pending ``fail_next`` rules."""
        with self._lock:
            self._failures.clear()

    def _take_failure(self, method: str, path: str) -> FailureRule | None:
        with self._lock:
            for rule in self._failures:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    return rule
        return None

    # ----------------------------------------------------------------- request log
    @property
    def requests(self) -> list[RecordedRequest]:
        """All requests so far, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def requests_matching(self, path_regex: str, method: str | None = None) -> list[RecordedRequest]:
        """Logged requests whose path matches ``re.search(path_regex, path)`` (and ``method``, if given)."""
        return [
            r for r in self.requests if re.search(path_regex, r.path) and (method is None or r.method == method.upper())
        ]

    def write_requests(self) -> list[RecordedRequest]:
        """Logged requests that could change server state (create/delete/settings, preupload, commit)."""
        pattern = r"^/api/repos/|/(preupload|commit|settings)/?"
        return [r for r in self.requests if r.method in ("POST", "PUT", "DELETE") and re.search(pattern, r.path)]

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log.clear()

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._log.append(record)

    # ----------------------------------------------------------------- repo accessors
    def _get_repo(self, repo_id: str, repo_type: str) -> _Repo:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on this server")
        return repo

    def create_repo(self, repo_id: str, private: bool = False, repo_type: str = "model") -> None:
        """Create ``repo_id`` ("namespace/name") directly, with the Hub's initial ``.gitattributes`` commit."""
        if repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(_NAME_PATTERN.match(p) for p in parts):
            raise ValueError(f"repo_id must look like 'namespace/name', got {repo_id!r}")
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id!r} already exists")
            repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now_iso())
            self._repos[(repo_type, repo_id)] = repo
            self._commit(repo, "main", "initial commit", "", parts[0], {".gitattributes": INITIAL_GITATTRIBUTES})

    def put_file(self, repo_id: str, path: str, content: bytes, repo_type: str = "model") -> str:
        """Commit one file to ``repo_id``'s main branch directly (as another uploader would); returns the sha."""
        repo = self._get_repo(repo_id, repo_type)
        with self._lock:
            head = self._resolve(repo, "main")
            files = dict(head.files) if head is not None else {}
            files[path] = content
            return self._commit(repo, "main", f"Upload {path}", "", repo.namespace, files).sha

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        """Whether the repo exists."""
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        """The repo's ``private`` flag."""
        return self._get_repo(repo_id, repo_type).private

    def repo_sha(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """The commit sha that ``revision`` (branch or sha) points to."""
        repo = self._get_repo(repo_id, repo_type)
        with self._lock:
            commit = self._resolve(repo, revision)
        if commit is None:
            raise KeyError(f"revision {revision!r} not found in {repo_id!r}")
        return commit.sha

    def repo_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files (path -> content) of ``repo_id`` at ``revision`` (branch or sha)."""
        repo = self._get_repo(repo_id, repo_type)
        with self._lock:
            commit = self._resolve(repo, revision)
        if commit is None:
            raise KeyError(f"revision {revision!r} not found in {repo_id!r}")
        return dict(commit.files)

    def repo_commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[CommitRecord]:
        """The history reachable from ``revision``, newest first."""
        repo = self._get_repo(repo_id, repo_type)
        with self._lock:
            return self._history(repo, self.repo_sha(repo_id, revision, repo_type))

    # ----------------------------------------------------------------- internals on repos (lock held)
    def _commit(
        self, repo: _Repo, branch: str, title: str, description: str, author: str, files: dict[str, bytes]
    ) -> CommitRecord:
        parent = repo.branches.get(branch)
        self._commit_counter += 1
        # The sha only has to be unique and deterministic per content; a counter keeps identical trees apart.
        digest = hashlib.sha1()
        for part in (str(self._commit_counter), parent or "", title, description):
            digest.update(part.encode() + b"\0")
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
        commit = CommitRecord(digest.hexdigest(), parent, title, description, author, _now_iso(), dict(files))
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit

    @staticmethod
    def _resolve(repo: _Repo, revision: str) -> CommitRecord | None:
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in repo.branches:
            return repo.commits[repo.branches[revision[len("refs/heads/") :]]]
        return repo.commits.get(revision)

    @staticmethod
    def _history(repo: _Repo, sha: str) -> list[CommitRecord]:
        history = []
        current: str | None = sha
        while current is not None:
            commit = repo.commits[current]
            history.append(commit)
            current = commit.parent
        return history

    # ----------------------------------------------------------------- request handling
    def _user_for(self, headers: Any) -> tuple[_User | None, bool]:
        """The user the Authorization header names, and whether a token was sent at all."""
        auth = headers.get("Authorization") or ""
        if not auth:
            return None, False
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else auth
        with self._lock:
            return self._users.get(token.strip()), True

    def _require_user(self, user: _User | None, token_sent: bool) -> _User:
        if user is None:
            if token_sent:
                raise HubError(401, "Invalid credentials in Authorization header")
            raise HubError(401, "You must be authenticated to access this resource (no token sent)")
        return user

    def _require_write(self, user: _User | None, token_sent: bool, namespace: str, what: str) -> _User:
        user = self._require_user(user, token_sent)
        if user.role != "write":
            raise HubError(403, f"Your token has the '{user.role}' role: it cannot {what}")
        if namespace != user.name and namespace not in user.orgs:
            raise HubError(
                403, f'You don\'t have the rights to {what} under the namespace "{namespace}" (you are {user.name})'
            )
        return user

    def _visible_repo(self, repo_type: str, repo_id: str, user: _User | None, token_sent: bool) -> _Repo:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        visible = repo is not None and (
            not repo.private or (user is not None and (repo.namespace == user.name or repo.namespace in user.orgs))
        )
        if not visible:
            # The real Hub answers 401 without a token and 404 with one, for a missing or a private repo alike.
            status = 404 if token_sent else 401
            raise HubError(status, "Repository not found", "RepoNotFound")
        assert repo is not None
        return repo

    def _commit_at(self, repo: _Repo, revision: str) -> CommitRecord:
        with self._lock:
            commit = self._resolve(repo, revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def handle(self, method: str, raw_path: str, query: dict[str, str], headers: Any, body: bytes) -> _Response:
        """Route one request and build its answer (errors become JSON answers with the Hub's error headers)."""
        user, token_sent = self._user_for(headers)
        try:
            return self._route(method, raw_path, query, user, token_sent, body)
        except HubError as err:
            response = _Response.json({"error": err.message, **err.extra}, err.status)
            response.headers["X-Error-Message"] = err.message
            if err.error_code is not None:
                response.headers["X-Error-Code"] = err.error_code
            return response

    def _route(
        self, method: str, raw_path: str, query: dict[str, str], user: _User | None, token_sent: bool, body: bytes
    ) -> _Response:
        segments = [unquote(s) for s in raw_path.strip("/").split("/")]
        if raw_path == "/api/whoami-v2" and method == "GET":
            return self._whoami(user, token_sent)
        if raw_path == "/api/repos/create" and method == "POST":
            return self._create_repo_route(user, token_sent, _json_body(body))
        if raw_path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo_route(user, token_sent, _json_body(body))
        if raw_path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(_json_body(body))
        if len(segments) >= 4 and segments[0] == "api" and segments[1] in ("models", "datasets", "spaces"):
            repo_type = segments[1][:-1]
            repo_id = f"{segments[2]}/{segments[3]}"
            return self._repo_api(method, repo_type, repo_id, segments[4:], query, user, token_sent, body)
        resolve_at = 3 if segments and segments[0] in ("datasets", "spaces") else 2
        if len(segments) >= resolve_at + 3 and segments[resolve_at] == "resolve" and method in ("GET", "HEAD"):
            repo_type = segments[0][:-1] if resolve_at == 3 else "model"
            repo_id = "/".join(segments[resolve_at - 2 : resolve_at])
            revision, path = segments[resolve_at + 1], "/".join(segments[resolve_at + 2 :])
            return self._resolve_file(method, repo_type, repo_id, revision, path, user, token_sent, query)
        raise HubError(404, f"This test server has no route for {method} {raw_path}")

    def _whoami(self, user: _User | None, token_sent: bool) -> _Response:
        user = self._require_user(user, token_sent)
        return _Response.json(
            {
                "type": "user",
                "id": hashlib.sha1(user.name.encode()).hexdigest()[:24],
                "name": user.name,
                "fullname": user.name,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "canPay": False,
                "avatarUrl": "",
                "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "admin"} for org in user.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test-token", "role": user.role}},
            }
        )

    def _create_repo_route(self, user: _User | None, token_sent: bool, payload: dict[str, Any]) -> _Response:
        user = self._require_user(user, token_sent)
        name = payload.get("name")
        namespace = payload.get("organization") or user.name
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        if not isinstance(name, str) or not _NAME_PATTERN.match(name) or not _NAME_PATTERN.match(namespace):
            raise HubError(400, f"Invalid repo name {namespace}/{name}")
        self._require_write(user, token_sent, namespace, f"create a {repo_type}")
        visibility = payload.get("visibility")
        private = visibility == "private" if visibility is not None else bool(payload.get("private", False))
        repo_id = f"{namespace}/{name}"
        try:
            self.create_repo(repo_id, private=private, repo_type=repo_type)
        except ValueError as err:
            # The Hub's 409 carries the url: the client reads it when exist_ok=True.
            url = f"{self.url}/{_url_prefix(repo_type)}{repo_id}"
            raise HubError(409, f"You already created this {repo_type} repo: {repo_id}", url=url) from err
        return _Response.json({"url": f"{self.url}/{_url_prefix(repo_type)}{repo_id}", "name": repo_id, "id": repo_id})

    def _delete_repo_route(self, user: _User | None, token_sent: bool, payload: dict[str, Any]) -> _Response:
        user = self._require_user(user, token_sent)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user.name}/{payload.get('name')}"
        repo = self._visible_repo(repo_type, repo_id, user, token_sent)
        self._require_write(user, token_sent, repo.namespace, f"delete a {repo_type}")
        with self._lock:
            del self._repos[(repo_type, repo_id)]
        return _Response(200)

    @staticmethod
    def _validate_yaml(payload: dict[str, Any]) -> _Response:
        # Without a YAML parser (standard library only) only the front-matter fences are checked: the real Hub
        # answers 400 with ``errors`` for a card whose metadata block is not closed.
        content = payload.get("content")
        if not isinstance(content, str):
            return _Response.json({"errors": [{"message": "'content' must be a string"}], "warnings": []}, 400)
        lines = content.splitlines()
        if lines and lines[0].strip() == "---" and "---" not in (line.strip() for line in lines[1:]):
            return _Response.json({"errors": [{"message": "metadata block is not closed by '---'"}]}, 400)
        return _Response.json({"errors": [], "warnings": []})

    def _repo_api(
        self,
        method: str,
        repo_type: str,
        repo_id: str,
        rest: list[str],
        query: dict[str, str],
        user: _User | None,
        token_sent: bool,
        body: bytes,
    ) -> _Response:
        action = rest[0] if rest else ""
        if method == "GET" and action in ("", "revision"):
            repo = self._visible_repo(repo_type, repo_id, user, token_sent)
            commit = self._commit_at(repo, rest[1] if action == "revision" and len(rest) > 1 else "main")
            return self._repo_info(repo, commit, with_blobs=query.get("blobs", "").lower() == "true")
        if method == "GET" and action == "tree" and len(rest) >= 2:
            repo = self._visible_repo(repo_type, repo_id, user, token_sent)
            commit = self._commit_at(repo, rest[1])
            return self._tree(commit, "/".join(rest[2:]), recursive=query.get("recursive", "").lower() == "true")
        if method == "GET" and action == "refs":
            repo = self._visible_repo(repo_type, repo_id, user, token_sent)
            with self._lock:
                branches = [
                    {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                    for name, sha in repo.branches.items()
                ]
            return _Response.json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        if method == "GET" and action == "commits" and len(rest) >= 2:
            repo = self._visible_repo(repo_type, repo_id, user, token_sent)
            commit = self._commit_at(repo, rest[1])
            with self._lock:
                history = self._history(repo, commit.sha)
            return _Response.json(
                [
                    {
                        "id": c.sha,
                        "title": c.title,
                        "message": c.description,
                        "authors": [{"user": c.author}],
                        "date": c.date,
                    }
                    for c in history
                ]
            )
        if method == "POST" and action in ("preupload", "commit") and len(rest) >= 2:
            if query.get("create_pr") in ("1", "true", "True"):
                raise HubError(400, "create_pr is not supported by this test server")
            repo = self._visible_repo(repo_type, repo_id, user, token_sent)
            writer = self._require_write(user, token_sent, repo.namespace, f"push to a {repo_type}")
            branch = rest[1]
            with self._lock:
                if branch not in repo.branches:
                    raise HubError(404, f"Branch {branch!r} not found", "RevisionNotFound")
            if action == "preupload":
                return self._preupload(repo, branch, _json_body(body))
            return self._apply_commit(repo, branch, writer, body)
        if method == "PUT" and action == "settings":
            repo = self._visible_repo(repo_type, repo_id, user, token_sent)
            self._require_write(user, token_sent, repo.namespace, f"change the settings of a {repo_type}")
            payload = _json_body(body)
            with self._lock:
                if "visibility" in payload:
                    repo.private = payload["visibility"] == "private"
                elif "private" in payload:
                    repo.private = bool(payload["private"])
            return _Response.json({"private": repo.private})
        raise HubError(404, f"This test server has no route for {method} /api/{repo_type}s/{repo_id}/{'/'.join(rest)}")

    def _repo_info(self, repo: _Repo, commit: CommitRecord, with_blobs: bool) -> _Response:
        siblings = []
        for path in sorted(commit.files):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=len(commit.files[path]), blobId=git_blob_sha1(commit.files[path]))
            siblings.append(sibling)
        return _Response.json(
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": repo.namespace,
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
        )

    @staticmethod
    def _tree(commit: CommitRecord, folder: str, recursive: bool) -> _Response:
        folder = folder.strip("/")
        prefix = f"{folder}/" if folder else ""
        if folder and not any(path.startswith(prefix) for path in commit.files):
            raise HubError(404, f"{folder} does not exist on this revision", "EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            relative_parts = path[len(prefix) :].split("/")
            # Directories between ``folder`` and the file: all of them when recursive, the first one otherwise.
            for depth in range(1, len(relative_parts) if recursive else min(2, len(relative_parts))):
                directory = prefix + "/".join(relative_parts[:depth])
                entries.setdefault(
                    directory,
                    {
                        "type": "directory",
                        "oid": hashlib.sha1(directory.encode()).hexdigest(),
                        "size": 0,
                        "path": directory,
                    },
                )
            if recursive or len(relative_parts) == 1:
                content = commit.files[path]
                entries[path] = {"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": path}
        return _Response.json([entries[key] for key in sorted(entries)])

    def _preupload(self, repo: _Repo, branch: str, payload: dict[str, Any]) -> _Response:
        files = payload.get("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) and "path" in f for f in files):
            raise HubError(400, "'files' must be a list of objects with a 'path'")
        with self._lock:
            current = repo.commits[repo.branches[branch]].files
        answer = []
        for entry in files:
            item: dict[str, Any] = {"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False}
            if entry["path"] in current:
                item["oid"] = git_blob_sha1(current[entry["path"]])
            answer.append(item)
        return _Response.json({"files": answer})

    def _apply_commit(self, repo: _Repo, branch: str, writer: _User, body: bytes) -> _Response:
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise HubError(400, f"commit payload is not NDJSON: {err}") from err
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a 'header' line")
        header = lines[0].get("value") or {}
        title = header.get("summary")
        if not isinstance(title, str) or not title:
            raise HubError(400, "commit header needs a non-empty 'summary'")
        # Validate every operation before touching the repo, so that a bad commit changes nothing.
        additions: dict[str, bytes] = {}
        deleted_files: list[str] = []
        deleted_folders: list[str] = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
                raise HubError(400, f"invalid path in commit operation {key!r}: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"file {path!r}: only base64 encoding is supported")
                try:
                    additions[path] = base64.b64decode(value.get("content", ""), validate=True)
                except binascii.Error as err:
                    raise HubError(400, f"file {path!r}: content is not valid base64") from err
            elif key == "deletedFile":
                deleted_files.append(path)
            elif key == "deletedFolder":
                deleted_folders.append(path.rstrip("/") + "/")
            elif key == "lfsFile":
                raise HubError(400, f"file {path!r}: LFS uploads are not supported (preupload answers 'regular')")
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        with self._lock:
            head = repo.commits[repo.branches[branch]]
            parent_commit = header.get("parentCommit")
            if parent_commit is not None and parent_commit != head.sha:
                raise HubError(412, f"parentCommit {parent_commit} is not the head of {branch} ({head.sha})")
            files = dict(head.files)
            for path in deleted_files:
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            for folder in deleted_folders:
                doomed = [path for path in files if path.startswith(folder)]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {folder}", "EntryNotFound")
                for path in doomed:
                    del files[path]
            files.update(additions)
            commit = self._commit(repo, branch, title, header.get("description") or "", writer.name, files)
        return _Response.json(
            {
                "commitUrl": f"{self.url}/{_url_prefix(repo.repo_type)}{repo.repo_id}/commit/{commit.sha}",
                "commitOid": commit.sha,
                "commitMessage": title,
                "pullRequestUrl": None,
                "success": True,
            }
        )

    def _resolve_file(
        self,
        method: str,
        repo_type: str,
        repo_id: str,
        revision: str,
        path: str,
        user: _User | None,
        token_sent: bool,
        query: dict[str, str],
    ) -> _Response:
        repo = self._visible_repo(repo_type, repo_id, user, token_sent)
        commit = self._commit_at(repo, revision)
        headers = {"X-Repo-Commit": commit.sha}
        if path not in commit.files:
            response = _Response.json({"error": "Entry not found"}, 404)
            response.headers.update(headers)
            response.headers.update({"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
            return response
        content = commit.files[path]
        headers.update(
            {
                "ETag": f'"{git_blob_sha1(content)}"',
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.split('/')[-1])}",
            }
        )
        return _Response(200, content, headers)


def _url_prefix(repo_type: str) -> str:
    return "" if repo_type == "model" else f"{repo_type}s/"


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as err:
        raise HubError(400, f"request body is not JSON: {err}") from err
    if not isinstance(payload, dict):
        raise HubError(400, "request body must be a JSON object")
    return payload


def _byte_range(range_header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for a single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range, or ``None``."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    if match.group(1) == "":
        start, end = max(0, size - int(match.group(2))), size - 1
    else:
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    return (start, end) if start <= end else None


class _Handler(http.server.BaseHTTPRequestHandler):
    hub: HubServer  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass  # the request log replaces stderr noise

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        body = self._read_body()
        user = self.hub._user_for(self.headers)[0]
        record = RecordedRequest(
            method=self.command,
            path=split.path,
            query=query,
            headers=dict(self.headers.items()),
            body=body,
            user=user.name if user is not None else None,
        )
        rule = self.hub._take_failure(self.command, split.path)
        if rule is not None and rule.when == "before":
            self._fail(rule, record)
            return
        response = self.hub.handle(self.command, split.path, query, self.headers, body)
        if rule is not None:
            self._fail(rule, record)
            return
        record.status = self._send(response)
        self.hub._record(record)

    def _fail(self, rule: FailureRule, record: RecordedRequest) -> None:
        record.injected = True
        if rule.drop:
            record.dropped = True
            self.hub._record(record)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        record.status = self._send(
            _Response.json({"error": f"injected failure ({rule.status}) by HubServer.fail_next"}, rule.status)
        )
        self.hub._record(record)

    def _send(self, response: _Response) -> int:
        body = response.body
        status = response.status
        headers = dict(response.headers)
        if status == 200 and self.command in ("GET", "HEAD") and headers.get("Accept-Ranges") == "bytes":
            byte_range = _byte_range(self.headers.get("Range", ""), len(body)) if self.headers.get("Range") else None
            if byte_range is not None:
                start, end = byte_range
                headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                body, status = body[start : end + 1], 206
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch


def iter_commit_operations(body: bytes) -> Iterator[dict[str, Any]]:
    """Decode a logged commit request body (NDJSON) into its lines, e.g. to inspect what a client sent."""
    for line in body.splitlines():
        if line.strip():
            yield json.loads(line)
