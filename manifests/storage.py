"""Object storage for inputs and run directories: any fsspec URI (``s3://``, ``gs://``, ``file://``) or a local path.

A run whose ``output_dir`` is a URI works in a local staging copy and mirrors it to the URI after
every phase (``push``); a rerun first downloads what the URI holds (``pull``) and resumes from it.
Each object upload is atomic, and commit files (a unit's staged Parquet, a phase's ``_DONE``, the
final manifest) are uploaded after the files they vouch for, so a crash mid-push never leaves a
commit file pointing at a missing object. Credentials come from the standard environment of each
backend (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_ENDPOINT_URL`` for S3,
``GOOGLE_APPLICATION_CREDENTIALS`` for GCS).

An object store that stops answering (a restart, a network cut) is waited for: every request to it is
retried with exponential backoff for up to ``RETRY_S`` seconds, then the run ends with ``StoreUnreachable``,
one line; the local copy is intact, so the same command resumes and uploads what is missing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import fsspec

from manifests.io import write_json

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_S = 120.0  # how long a request is retried while the store does not answer
BACKOFF_S = (1.0, 16.0)  # first wait, longest wait; each wait doubles
# Errors that say the store is there but the request was wrong: retrying cannot help.
PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
LOCAL_FULL = (errno.ENOSPC, errno.EDQUOT)  # a download that filled the local volume: waiting cannot help
PUSHED = ".pushed.json"  # local record of what the URI already holds: relative path -> [size, mtime_ns]
COMMIT_NAMES = ("_DONE", "manifest.parquet", "run.json")


class StoreUnreachable(OSError):
    """The object store did not answer for ``RETRY_S`` seconds; the message is one line and says to rerun."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    """OSError (s3fs, gcsfs and aiohttp raise one for a refused or reset connection and a 5xx) and botocore's
    connection and HTTP-client errors, which s3fs passes through unwrapped."""
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError, HTTPClientError
    except ImportError:
        return (OSError,)
    return (OSError, BotoConnectionError, HTTPClientError)


def retried(request: Callable[[], T], what: str, budget_s: float | None = None) -> T:
    """``request()``, retried with exponential backoff while it fails transiently, for at most ``budget_s``
    (default ``RETRY_S``); then StoreUnreachable naming ``what``."""
    budget_s = RETRY_S if budget_s is None else budget_s
    deadline, wait = time.monotonic() + budget_s, BACKOFF_S[0]
    while True:
        try:
            return request()
        except PERMANENT:
            raise
        except _transient_errors() as exc:
            if getattr(exc, "errno", None) in LOCAL_FULL:
                raise  # this machine's disk, not the store: the run ends as a full disk does
            if time.monotonic() + wait > deadline:
                raise StoreUnreachable(f"the object store did not answer for {budget_s:.0f} s ({what}: "
                                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                       f"the local copy is intact: rerun the same command once it is back") from exc
            log.warning("object store: %s failed (%s); retrying in %.0f s", what, type(exc).__name__, wait)
            time.sleep(wait)
            wait = min(wait * 2, BACKOFF_S[1])


def is_uri(path: str) -> bool:
    """True for a remote URI; plain paths and ``file://`` URIs are local."""
    return "://" in path and not path.startswith("file://")


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(uri)
    return fs, root.rstrip("/")


def staging_root(uri: str, staging_dir: str | None) -> Path:
    """Local working copy of a URI run directory: ``staging_dir``, or one under the temp dir named after the URI."""
    if staging_dir:
        return Path(staging_dir)
    return Path(tempfile.gettempdir()) / "thresher-staging" / hashlib.sha256(uri.encode()).hexdigest()[:16]


def fetch_input(uri: str, into: Path) -> Path:
    """Download an input file or folder to ``into``; returns the local path it now has."""
    fs, root = _fs(uri)
    target = into / Path(root).name
    if not retried(lambda: fs.exists(root), f"looking up {uri}"):
        raise FileNotFoundError(f"input.path: {uri} does not exist")
    if retried(lambda: fs.isdir(root), f"looking up {uri}"):
        for remote, info in retried(lambda: fs.find(root, detail=True), f"listing {uri}").items():
            _download(fs, remote, target / Path(remote).relative_to(root), info["size"])
    else:
        _download(fs, root, target, retried(lambda: fs.size(root), f"looking up {uri}"))
    return target


def _download(fs: fsspec.AbstractFileSystem, remote: str, local: Path, size: int) -> bool:
    """Download unless the local file already has the object's size; returns whether it downloaded."""
    if local.exists() and local.stat().st_size == size:
        return False
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.download.tmp")
    retried(lambda: fs.get_file(remote, str(tmp)), f"downloading {remote}")
    tmp.replace(local)
    return True


def _is_commit(relative: str) -> bool:
    path = Path(relative)
    return path.name in COMMIT_NAMES or (path.parent.name == "staged" and path.suffix == ".parquet")


def _local_files(root: Path) -> dict[str, list[int]]:
    files = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in Path(relative).parts):
            stat = path.stat()
            files[relative] = [stat.st_size, stat.st_mtime_ns]
    return files


def _load_pushed(local: Path) -> dict[str, list[int]]:
    path = local / PUSHED
    return json.loads(path.read_text()) if path.exists() else {}


def pull(uri: str, local: Path) -> int:
    """Download every object under ``uri`` that the local copy lacks; returns how many."""
    fs, root = _fs(uri)
    local.mkdir(parents=True, exist_ok=True)
    if not retried(lambda: fs.exists(root), f"looking up {uri}"):
        return 0
    pushed, count = _load_pushed(local), 0
    for remote, info in retried(lambda: fs.find(root, detail=True), f"listing {uri}").items():
        relative = Path(remote).relative_to(root).as_posix()
        target = local / relative
        count += _download(fs, remote, target, info["size"])
        stat = target.stat()
        pushed[relative] = [stat.st_size, stat.st_mtime_ns]
    write_json(pushed, local / PUSHED)
    return count


def push(local: Path, uri: str) -> int:
    """Mirror the local copy to ``uri``: upload changed files (commit files last), delete objects gone locally.

    Stale commit files go first, so a remote copy never vouches for data that is being replaced.
    """
    fs, root = _fs(uri)
    pushed, current = _load_pushed(local), _local_files(local)
    changed = [r for r, stamp in sorted(current.items()) if pushed.get(r) != stamp]
    stale = sorted(set(pushed) - set(current))
    steps = ([("rm", r) for r in stale if _is_commit(r)] + [("put", r) for r in changed if not _is_commit(r)]
             + [("rm", r) for r in stale if not _is_commit(r)] + [("put", r) for r in changed if _is_commit(r)])
    try:
        for action, relative in steps:
            remote = f"{root}/{relative}"
            if action == "put":
                retried(lambda: fs.put_file(str(local / relative), remote), f"uploading {remote}")
                pushed[relative] = current[relative]
            else:
                retried(lambda: fs.rm_file(remote) if fs.exists(remote) else None, f"deleting {remote}")
                pushed.pop(relative, None)
    finally:  # what was uploaded before a failure is not uploaded again; lost in a crash, it costs only that
        write_json(pushed, local / PUSHED)
    return len(steps)
