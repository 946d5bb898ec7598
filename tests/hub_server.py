"""A small Hugging Face Hub-protocol server, so push/pull tests run the real clients offline.

It speaks the subset of the Hub's HTTP API that huggingface_hub (create_repo, create_commit /
upload_folder, hf_hub_download), transformers (`from_pretrained`, `pipeline`) and datasets
(`load_dataset` through HfFileSystem) call to create a repo, upload regular and git-LFS files,
and download them again:

    GET  /api/whoami-v2                                   who the token belongs to
    POST /api/repos/create                                new model / dataset repo
    POST /api/validate-yaml                               README.md metadata check
    GET  /api/{type}s/{id}[/revision/{rev}]               repo info (sha, siblings, cardData)
    GET  /api/{type}s/{id}/tree/{rev}[/{path}]            folder listing (?recursive=true)
    POST /api/{type}s/{id}/paths-info/{rev}               info on given paths (form data)
    POST /api/{type}s/{id}/preupload/{rev}                regular or LFS upload mode per file
    POST /api/{type}s/{id}/commit/{rev}                   ndjson commit (file / lfsFile / deleted*)
    POST /api/{type}s/{id}/branch/{branch}                new branch from main
    POST /[datasets/]{id}.git/info/lfs/objects/batch      git-LFS batch: where to PUT each object
    PUT  /lfs-upload/{ticket}                             the "pre-signed" LFS upload URL
    POST /[datasets/]{id}.git/info/lfs/objects/verify     LFS verify step
    HEAD|GET /[datasets/]{id}/resolve/{rev}/{path}        file download (ETag, Range, X-Repo-Commit)

Errors carry the Hub's `X-Error-Code` / `X-Error-Message` headers (RepoNotFound,
RevisionNotFound, EntryNotFound, "Invalid credentials in Authorization header") so the clients
raise the same exception types as against huggingface.co.

Auth: one user, `TEST_USER`, whose token is `TEST_TOKEN`. Any other bearer token gets 401, writes
need the token, private repos are invisible without it. File contents live in a folder on disk,
addressed by sha256; repo and commit metadata are kept in memory. The clients must run with
`HF_HUB_DISABLE_XET=1` (this server offers no Xet storage) and `HF_ENDPOINT` pointing here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

TEST_USER = "koin-tester"
TEST_ORG = "koin-org"
TEST_TOKEN = "hf_koinTestToken0123456789abcdefABCDEF"  # fake; only this server knows it
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

# What the Hub's default .gitattributes sends to LFS, plus its >10 MB and binary-content rules.
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".npy", ".npz",
    ".parquet", ".arrow", ".zip", ".gz", ".tar", ".pkl", ".pickle", ".jpg", ".jpeg", ".png",
)  # fmt: skip
MAX_REGULAR_SIZE = 10 * 1024 * 1024
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob: sha1 over 'blob <size>\\0' + content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class FileEntry:
    size: int
    sha256: str  # where the content sits in the blob store (and the LFS oid)
    lfs: bool
    content_oid: str = ""  # git blob oid of the content (regular files)

    @property
    def git_oid(self) -> str:
        """Regular files: the blob's git oid; LFS files: the oid of their pointer file."""
        return git_blob_oid(lfs_pointer(self.sha256, self.size)) if self.lfs else self.content_oid

    def to_json(self, path: str, commit: Commit | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": "file",
            "oid": self.git_oid,
            "size": self.size,
            "path": path,
        }
        if self.lfs:
            pointer_size = len(lfs_pointer(self.sha256, self.size))
            item["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": pointer_size}
        if commit is not None:
            item["lastCommit"] = commit.summary_json()
        return item


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    date: str
    files: dict[str, FileEntry]

    def summary_json(self) -> dict[str, str]:
        return {"id": self.oid, "title": self.title, "date": self.date}


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class HubState:
    """Repos, commits and the content-addressed blob store behind one lock."""

    def __init__(self, root: Path) -> None:
        self.blobs = Path(root) / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.upload_tickets: dict[str, tuple[str, int]] = {}
        self.requests: list[str] = []  # "METHOD /path -> status", for debugging failed tests
        self._counter = 0

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blobs / sha
        if not path.exists():
            tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def blob(self, sha: str) -> Path:
        return self.blobs / sha

    def has_blob(self, sha: str, size: int) -> bool:
        path = self.blob(sha)
        return path.is_file() and path.stat().st_size == size

    def new_commit(
        self, repo: Repo, parent: str | None, title: str, files: dict[str, FileEntry]
    ) -> Commit:
        with self.lock:
            self._counter += 1
            seed = f"{repo.repo_id}|{parent}|{title}|{self._counter}|{time.time_ns()}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, _now(), files)
        repo.commits[commit.oid] = commit
        return commit

    def file_entry(self, data: bytes, lfs: bool) -> FileEntry:
        sha = self.put_blob(data)
        return FileEntry(size=len(data), sha256=sha, lfs=lfs, content_oid=git_blob_oid(data))


class HubError(Exception):
    """Raised inside a handler to send an error response."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict | None = None,
        **body: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.body = body  # extra JSON fields (the 409 of create_repo carries the repo "url")


_ID = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
_API = r"^/api/(?P<kind>models|datasets|spaces)/" + _ID
_GIT = r"^/(?:(?P<prefix>datasets|spaces)/)?" + _ID
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), h)
    for m, p, h in [
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("POST", r"^/api/repos/create$", "create_repo"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("GET", _API + r"(?:/revision/(?P<rev>[^/]+))?$", "repo_info"),
        ("GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree"),
        ("POST", _API + r"/paths-info/(?P<rev>[^/]+)$", "paths_info"),
        ("POST", _API + r"/preupload/(?P<rev>[^/]+)$", "preupload"),
        ("POST", _API + r"/commit/(?P<rev>[^/]+)$", "commit"),
        ("POST", _API + r"/branch/(?P<rev>[^/]+)$", "create_branch"),
        ("POST", _GIT + r"\.git/info/lfs/objects/batch$", "lfs_batch"),
        ("POST", _GIT + r"\.git/info/lfs/objects/verify$", "lfs_verify"),
        ("PUT", r"^/lfs-upload/(?P<ticket>[0-9a-f]+)$", "lfs_put"),
        ("GET", _GIT + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
        ("HEAD", _GIT + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
    ]
]


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    server: HubHTTPServer

    # --- plumbing ---------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib names it `format`
        pass  # requests are recorded in state.requests instead of spamming stderr

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base(self) -> str:
        return self.server.base_url

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        status = 500
        try:
            for route_method, pattern, handler in ROUTES:
                match = pattern.match(split.path)
                if route_method == method and match:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    status = getattr(self, f"_h_{handler}")(method=method, **params)
                    break
            else:
                raise HubError(404, f"{method} {split.path} is not implemented by the test Hub")
        except HubError as err:
            status = err.status
            self._send_error(err)
        except Exception as err:  # a server bug: answer 500 so the client fails loudly
            status = 500
            self._send_error(HubError(500, f"test Hub server error: {err!r}"))
        with self.state.lock:
            self.state.requests.append(f"{method} {self.path} -> {status}")

    def _send(self, status: int, body: bytes, headers: dict[str, str], method: str = "GET") -> int:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)
        return status

    def _json(
        self, obj: Any, status: int = 200, headers: dict | None = None, method: str = "GET"
    ) -> int:
        body = json.dumps(obj).encode()
        return self._send(
            status, body, {"Content-Type": "application/json", **(headers or {})}, method
        )

    def _send_error(self, err: HubError) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Error-Message": err.message,
            **err.headers,
        }
        if err.code:
            headers["X-Error-Code"] = err.code
        method = "HEAD" if self.command == "HEAD" else "GET"
        self._send(
            err.status, json.dumps({"error": err.message, **err.body}).encode(), headers, method
        )

    # --- auth and lookups -------------------------------------------------------------------

    def _authenticated(self, *, required: bool) -> bool:
        header = self.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        if token is not None and token != TEST_TOKEN:
            raise HubError(401, INVALID_CREDENTIALS)
        if required and token is None:
            raise HubError(401, "You must be authenticated to access this resource")
        return token is not None

    def _repo(self, kind: str, ns: str, name: str, *, write: bool = False) -> Repo:
        authed = self._authenticated(required=write)
        repo_type = REPO_TYPES.get(kind, kind)
        repo = self.state.repos.get((repo_type, f"{ns}/{name}"))
        if repo is None or (repo.private and not authed):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and ns not in (TEST_USER, TEST_ORG):
            raise HubError(403, f"You don't have the rights to write to {repo.repo_id}")
        return repo

    def _commit(self, repo: Repo, rev: str | None) -> Commit:
        rev = rev or "main"
        oid = repo.branches.get(rev) or (rev if rev in repo.commits else None)
        if oid is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo.commits[oid]

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.base}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    @staticmethod
    def _folders(files: dict[str, FileEntry]) -> set[str]:
        return {
            str(Path(p).parents[i].as_posix())
            for p in files
            for i in range(len(Path(p).parents) - 1)
        }

    def _folder_json(self, path: str, commit: Commit, expand: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": "directory",
            "oid": hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest(),
            "size": 0,
            "path": path,
        }
        if expand:
            item["lastCommit"] = commit.summary_json()
        return item

    def _flag(self, name: str) -> bool:
        return any(v.lower() in ("1", "true") for v in self.query.get(name, []))

    # --- endpoints --------------------------------------------------------------------------

    def _h_whoami(self, method: str) -> int:
        self._authenticated(required=True)
        return self._json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": TEST_USER,
                "fullname": "KoIn Tester",
                "email": None,
                "emailVerified": False,
                "canPay": False,
                "isPro": False,
                "orgs": [{"type": "org", "name": TEST_ORG, "roleInOrg": "write"}],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "tests", "role": "write"},
                },
            }
        )

    def _h_create_repo(self, method: str) -> int:
        self._authenticated(required=True)
        payload = json.loads(self.body or b"{}")
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or TEST_USER
        name = payload.get("name") or ""
        if repo_type not in URL_PREFIX or not _NAME.match(name) or "--" in name or ".." in name:
            raise HubError(400, f"Invalid repo name or type: {name!r} ({repo_type})")
        if namespace not in (TEST_USER, TEST_ORG):
            raise HubError(
                403,
                f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"',
            )
        repo_id = f"{namespace}/{name}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self.state.lock:
            existing = self.state.repos.get((repo_type, repo_id))
            if existing is not None:
                raise HubError(
                    409, f"You already created this {repo_type} repo", url=self._repo_url(existing)
                )
            repo = Repo(repo_type, repo_id, private, _now())
            attributes = "".join(
                f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES
            )
            files = {".gitattributes": self.state.file_entry(attributes.encode(), lfs=False)}
            repo.branches["main"] = self.state.new_commit(repo, None, "initial commit", files).oid
            self.state.repos[(repo_type, repo_id)] = repo
        return self._json(
            {"url": self._repo_url(repo), "name": repo_id, "id": secrets.token_hex(12)}
        )

    def _h_validate_yaml(self, method: str) -> int:
        payload = json.loads(self.body or b"{}")
        content = payload.get("content", "")
        match = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---(\r?\n|$)", content)
        if not match:
            return self._json(
                {"errors": [], "warnings": [{"message": "Empty or missing yaml metadata"}]}
            )
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as err:
            return self._json({"errors": [{"message": f"YAML does not parse: {err}"}]}, status=400)
        if metadata is not None and not isinstance(metadata, dict):
            return self._json({"errors": [{"message": "metadata must be a mapping"}]}, status=400)
        errors = [
            {"message": f'"{key}" must be a list of strings'}
            for key in ("tags", "datasets")
            if key in (metadata or {}) and not all(isinstance(v, str) for v in metadata[key] or [])
        ]
        return self._json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    def _h_repo_info(
        self, method: str, kind: str, ns: str, name: str, rev: str | None = None
    ) -> int:
        repo = self._repo(kind, ns, name)
        commit = self._commit(repo, rev)
        blobs = self._flag("blobs")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    pointer_size = len(lfs_pointer(entry.sha256, entry.size))
                    sibling["lfs"] = {
                        "size": entry.size,
                        "sha256": entry.sha256,
                        "pointerSize": pointer_size,
                    }
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": ns,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        card = self._card_data(commit)
        if card is not None:
            info["cardData"] = card
        return self._json(info)

    def _card_data(self, commit: Commit) -> dict | None:
        entry = commit.files.get("README.md")
        if entry is None:
            return None
        text = self.state.blob(entry.sha256).read_text(encoding="utf-8", errors="replace")
        match = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---(\r?\n|$)", text)
        try:
            data = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    def _h_tree(self, method: str, kind: str, ns: str, name: str, rev: str, path: str = "") -> int:
        repo = self._repo(kind, ns, name)
        commit = self._commit(repo, rev)
        path = path.strip("/")
        folders = self._folders(commit.files)
        if path and path not in folders:
            if path in commit.files:
                raise HubError(400, f"{path} is a file, not a folder")
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        recursive, expand = self._flag("recursive"), self._flag("expand")
        prefix = f"{path}/" if path else ""

        def wanted(item: str) -> bool:
            if not item.startswith(prefix):
                return False
            return recursive or "/" not in item[len(prefix) :]

        listing = [
            self._folder_json(f, commit, expand) for f in sorted(folders) if f != "." and wanted(f)
        ]
        listing += [
            e.to_json(p, commit if expand else None)
            for p, e in sorted(commit.files.items())
            if wanted(p)
        ]
        return self._json(listing)

    def _h_paths_info(self, method: str, kind: str, ns: str, name: str, rev: str) -> int:
        repo = self._repo(kind, ns, name)
        commit = self._commit(repo, rev)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = json.loads(self.body or b"{}")
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = parse_qs(self.body.decode())
            paths = form.get("paths", [])
            expand = any(v.lower() in ("1", "true") for v in form.get("expand", []))
        folders = self._folders(commit.files)
        found = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                found.append(commit.files[path].to_json(path, commit if expand else None))
            elif path in folders or path == "":
                found.append(self._folder_json(path, commit, expand))
        return self._json(found)

    def _h_preupload(self, method: str, kind: str, ns: str, name: str, rev: str) -> int:
        repo = self._repo(kind, ns, name, write=True)
        commit = self._commit(repo, rev)
        files = []
        for item in json.loads(self.body or b"{}").get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = path.lower().endswith(LFS_SUFFIXES) or size > MAX_REGULAR_SIZE or b"\0" in sample
            existing = commit.files.get(path)
            remote_oid = None
            if existing is not None and existing.lfs == lfs:
                remote_oid = existing.sha256 if lfs else existing.git_oid
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": remote_oid,
                }
            )
        return self._json({"files": files, "commitOid": commit.oid})

    def _h_lfs_batch(self, method: str, ns: str, name: str, prefix: str = "") -> int:
        kind = prefix or "models"
        repo = self._repo(kind, ns, name, write=True)
        payload = json.loads(self.body or b"{}")
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        verify_url = f"{self._repo_url(repo)}.git/info/lfs/objects/verify"
        objects = []
        for obj in payload.get("objects", []):
            oid, size = str(obj["oid"]), int(obj["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                entry["error"] = {"code": 422, "message": "oid must be a sha256 hex digest"}
            elif not self.state.has_blob(oid, size):
                ticket = secrets.token_hex(16)
                with self.state.lock:
                    self.state.upload_tickets[ticket] = (oid, size)
                entry["actions"] = {
                    "upload": {"href": f"{self.base}/lfs-upload/{ticket}", "expires_in": 900},
                    "verify": {"href": verify_url},
                }
            objects.append(entry)
        return self._json(
            {"transfer": "basic", "objects": objects},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _h_lfs_put(self, method: str, ticket: str) -> int:
        with self.state.lock:
            expected = self.state.upload_tickets.pop(ticket, None)
        if expected is None:
            raise HubError(403, "upload URL expired or unknown")
        oid, size = expected
        if len(self.body) != size or hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match the announced sha256 and size")
        self.state.put_blob(self.body)
        return self._send(200, b"", {"ETag": f'"{oid}"'})

    def _h_lfs_verify(self, method: str, ns: str, name: str, prefix: str = "") -> int:
        self._repo(prefix or "models", ns, name, write=True)
        payload = json.loads(self.body or b"{}")
        if not self.state.has_blob(str(payload.get("oid")), int(payload.get("size", -1))):
            raise HubError(404, "object not found in LFS storage")
        return self._json({"success": True})

    def _h_create_branch(self, method: str, kind: str, ns: str, name: str, rev: str) -> int:
        repo = self._repo(kind, ns, name, write=True)
        start = json.loads(self.body or b"{}").get("startingPoint") if self.body else None
        with self.state.lock:
            if rev in repo.branches:
                raise HubError(409, f"Reference refs/heads/{rev} already exists")
            repo.branches[rev] = self._commit(repo, start).oid
        return self._json({})

    def _h_commit(self, method: str, kind: str, ns: str, name: str, rev: str) -> int:
        repo = self._repo(kind, ns, name, write=True)
        if self._flag("create_pr"):
            raise HubError(400, "pull requests are not supported by the test Hub")
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "a commit starts with a header line")
        header = lines[0]["value"]
        with self.state.lock:
            parent = self._commit(repo, rev)
            if rev not in repo.branches:
                raise HubError(400, f"can only commit to a branch, not {rev}")
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = str(value["path"]).strip("/")
                if key == "file":
                    data = (
                        base64.b64decode(value["content"])
                        if value.get("encoding") == "base64"
                        else value["content"].encode()
                    )
                    files[path] = self.state.file_entry(data, lfs=False)
                elif key == "lfsFile":
                    oid, size = value["oid"], value.get("size")
                    blob = self.state.blob(oid)
                    if not blob.is_file() or (
                        size is not None and blob.stat().st_size != int(size)
                    ):
                        raise HubError(400, f"LFS object {oid} for {path} was never uploaded")
                    files[path] = FileEntry(size=blob.stat().st_size, sha256=oid, lfs=True)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    files = {p: e for p, e in files.items() if not p.startswith(f"{path}/")}
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            commit = self.state.new_commit(
                repo, parent.oid, header.get("summary") or "update", files
            )
            repo.branches[rev] = commit.oid
        url = f"{self._repo_url(repo)}/commit/{commit.oid}"
        return self._json(
            {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None}
        )

    def _h_resolve(
        self, method: str, ns: str, name: str, rev: str, path: str, prefix: str = ""
    ) -> int:
        repo = self._repo(prefix or "models", ns, name)
        commit = self._commit(repo, rev)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(Path(path).name)}",
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        data = self.state.blob(entry.sha256).read_bytes()
        status, body = 200, data
        range_header = self.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if not match or (match[1] == "" and match[2] == ""):
                raise HubError(416, f"unsupported Range {range_header}")
            if match[1] == "":  # suffix range: the last N bytes
                start, end = max(0, len(data) - int(match[2])), len(data) - 1
            else:
                start = int(match[1])
                end = min(int(match[2]), len(data) - 1) if match[2] else len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise HubError(
                    416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        return self._send(status, body, headers, method)


class HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: HubState, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), HubRequestHandler)
        self.state = state
        self.base_url = f"http://{host}:{self.server_address[1]}"


class HubServer:
    """Start/stop wrapper: `with HubServer(tmp_path) as hub: ...` serves on a free loopback port."""

    def __init__(self, root: str | Path) -> None:
        self.state = HubState(Path(root))
        self.httpd = HubHTTPServer(self.state)
        self.url = self.httpd.base_url
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="test-hub", daemon=True
        )

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_env(
        self, hf_home: str | Path, token: str | None = TEST_TOKEN, base_env: dict | None = None
    ) -> dict:
        """Environment for a subprocess whose huggingface_hub / datasets / transformers use this server.

        HF_ENDPOINT is read when huggingface_hub is imported, hence a subprocess; Xet is disabled
        because this server offers plain git-LFS only.
        """
        env = dict(os.environ if base_env is None else base_env)
        for key in (
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_DATASETS_OFFLINE",
            "TRANSFORMERS_OFFLINE",
        ):
            env.pop(key, None)
        env.update(
            HF_ENDPOINT=self.url,
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_XET="1",
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_IMPLICIT_TOKEN="0",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    def repo_files(
        self, repo_id: str, repo_type: str = "model", revision: str = "main"
    ) -> dict[str, bytes]:
        """What a branch holds now, read straight from the store (to check uploads byte for byte)."""
        repo = self.state.repos[(repo_type, repo_id)]
        commit = repo.commits[repo.branches[revision]]
        return {
            path: self.state.blob(entry.sha256).read_bytes() for path, entry in commit.files.items()
        }

    def lfs_paths(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        repo = self.state.repos[(repo_type, repo_id)]
        return {p for p, e in repo.commits[repo.branches[revision]].files.items() if e.lfs}
