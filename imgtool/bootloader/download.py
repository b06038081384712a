"""Fetch a file whose SHA-256 is known in advance, so nothing unverified ever lands in a cache.

Generic: knows URLs, hashes and files, nothing about chips. The bytes stream into
a staged file beside the destination (:func:`imgtool.atomic.staged_file`) that is
renamed into place only after the hash matches; a lock file beside the destination
lets concurrent processes share one cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import ssl
import stat
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from imgtool import __version__
from imgtool.atomic import file_lock, staged_file
from imgtool.errors import ImgtoolError

#: Hosts for which plain http:// is allowed (a local mirror or a test server); everything else must be https.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: HTTP statuses worth retrying: the server or a proxy may recover.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
CHUNK_SIZE = 16 * 1024
#: Suffix of a download's staged file until its hash is checked.
PART_SUFFIX = ".part"
USER_AGENT = f"imgtool/{__version__}"
#: The clock the total deadline is measured on (tests replace it to make time pass at will).
_clock = time.monotonic


class DownloadError(ImgtoolError):
    """A file cannot be fetched or does not match its pinned hash."""


class DownloadSettings(NamedTuple):
    """How patient to be. The defaults suit a slow link; tests shrink them to stay quick."""

    timeout: float = 30.0  # seconds without progress (connect or read) before giving up
    retries: int = 3  # extra attempts after the first, for transient failures only
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_bytes: int = 16 * 1024 * 1024  # refuse anything larger: a pinned file is never this big
    deadline: float = 300.0  # seconds for the whole download, every attempt included: a dripping server ends too


DEFAULT_SETTINGS = DownloadSettings()


class _Transient(Exception):
    """A failure another attempt may cure; carries the message to show if none does."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def has_hash(path: str | os.PathLike, sha256: str) -> bool:
    """True when ``path`` is a regular file holding exactly the bytes with this SHA-256 (a FIFO or device is not)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode) and sha256_file(path) == sha256.lower()
    except OSError:
        return False


def check_url(url: str) -> None:
    """Allow https anywhere and http only to this machine, so certificates guard every remote fetch."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise DownloadError(
        f"refusing to download {url}: only https:// addresses (or http:// on 127.0.0.1) are allowed",
        field="url",
    )


def install_bytes(data: bytes, dest: str | os.PathLike, *, sha256: str, source: str) -> Path:
    """Put ``data`` at ``dest`` only if its SHA-256 matches; used for copies from a local mirror."""
    dest = Path(dest)
    _verify(hashlib.sha256(data).hexdigest(), sha256, source, len(data), local=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(_lock_path(dest)):
        if has_hash(dest, sha256):
            return dest
        with staged_file(dest, PART_SUFFIX) as fh:
            fh.write(data)
    return dest


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str,
    settings: DownloadSettings = DEFAULT_SETTINGS,
    quiet: bool = False,
    label: str | None = None,
) -> Path:
    """Fetch ``url`` into ``dest`` unless ``dest`` already has the pinned hash; returns ``dest``.

    Retries connection failures, stalls and 5xx answers with exponential back-off;
    a 4xx answer, an oversized body or a hash mismatch fails at once. ``quiet`` hides the
    progress bar, which shows only when standard error is a terminal (the CLI also sets
    ``quiet`` under ``$CI``).
    """
    check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(_lock_path(dest)):
        # Another process may have finished the same download while we waited for the lock.
        if has_hash(dest, sha256):
            return dest
        attempt = 0
        give_up_at = _clock() + settings.deadline
        while True:
            try:
                with staged_file(dest, PART_SUFFIX) as out:
                    digest, size = _fetch_into(out, url, settings, quiet=quiet, label=label or dest.name, give_up_at=give_up_at)
                    _verify(digest, sha256, url, size)  # raising here removes the staged file
                return dest
            except _Transient as exc:
                if attempt >= settings.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise DownloadError(f"{exc}{tries}; check the network or set a mirror", field="url") from None
                pause = settings.backoff * (2**attempt)
                if _clock() + pause > give_up_at:
                    raise DownloadError(f"{exc}; {_deadline_message(url, settings)}", field="url") from None
                time.sleep(pause)
                attempt += 1


def _verify(actual: str, expected: str, source: str, size: int, *, local: bool = False) -> None:
    if actual != expected.lower():
        cause = (
            "The file in the mirror folder is not the pinned build: replace it with the pinned file or unset the mirror"
            if local
            else "The server or a proxy served different bytes: use the pinned source or a trusted mirror"
        )
        raise DownloadError(
            f"{source} ({size} bytes) has SHA-256 {actual} but {expected.lower()} is pinned; nothing was kept. {cause}",
            field="sha256",
        )


def _lock_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".lock")


def _fetch_into(out, url: str, settings: DownloadSettings, *, quiet: bool, label: str, give_up_at: float) -> tuple[str, int]:
    """One attempt: stream the body into the open file ``out``; returns its SHA-256 (hex) and size.

    Each read returns what has arrived (``read1``), so the deadline ``give_up_at`` (a
    value of ``_clock``) is checked however slowly the bytes come.
    """
    try:
        response = _opener().open(_request(url), timeout=settings.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in RETRYABLE_STATUSES:
            raise _Transient(f"{url} answered HTTP {exc.code} {exc.reason}") from None
        if exc.code == 404:
            raise DownloadError(f"{url} does not exist (HTTP 404); check the address or mirror", field="url") from None
        raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}", field="url") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Transient(_stall_message(url, settings)) from None
        if _is_certificate_error(reason):
            raise DownloadError(f"{url}: TLS certificate check failed ({reason})", field="url") from None
        raise _Transient(f"cannot reach {url} ({reason})") from None
    except (TimeoutError, socket.timeout):
        raise _Transient(_stall_message(url, settings)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(f"cannot reach {url} ({exc})") from None

    digest = hashlib.sha256()
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > settings.max_bytes:
            raise DownloadError(_too_big(url, settings), field="url")
        with _progress(label, total, quiet) as advance:
            received = 0
            while True:
                if _clock() > give_up_at:
                    raise DownloadError(_deadline_message(url, settings), field="url")
                try:
                    chunk = response.read1(CHUNK_SIZE)
                except (TimeoutError, socket.timeout):
                    raise _Transient(_stall_message(url, settings)) from None
                except (OSError, http.client.HTTPException) as exc:
                    raise _Transient(f"connection to {url} broke ({exc})") from None
                if not chunk:
                    break
                received += len(chunk)
                if received > settings.max_bytes:
                    raise DownloadError(_too_big(url, settings), field="url")
                out.write(chunk)
                digest.update(chunk)
                advance(len(chunk))
        if total is not None and received < total:
            raise _Transient(f"{url} ended after {received} of {total} bytes")
    return digest.hexdigest(), received


def _stall_message(url: str, settings: DownloadSettings) -> str:
    return f"timed out: {url} sent nothing for {settings.timeout:g} s"


def _deadline_message(url: str, settings: DownloadSettings) -> str:
    return f"{url} did not arrive within {settings.deadline:g} s; check the network or set a mirror"


def _too_big(url: str, settings: DownloadSettings) -> str:
    return f"{url} is larger than the {settings.max_bytes}-byte limit; refusing it"


def _is_certificate_error(reason) -> bool:
    return isinstance(reason, ssl.SSLCertVerificationError)


def _request(url: str):
    return urllib.request.Request(url, headers={"User-Agent": USER_AGENT})


def _opener():
    """An opener with certificate checks that refuses redirects to anything ``check_url`` would refuse."""

    class CheckedRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            check_url(newurl)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    context = ssl.create_default_context()
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), CheckedRedirects())


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def _progress(label: str, total: int | None, quiet: bool):
    """Yield a function that advances a rich progress bar on stderr, or does nothing when not wanted."""
    if not _show_progress(quiet):
        yield lambda n: None
        return
    # not at the top: rich (~25 ms) draws only on a terminal; a quiet or piped download never needs it
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"downloading {label}", total=total)
        yield lambda n: progress.advance(task, n)
