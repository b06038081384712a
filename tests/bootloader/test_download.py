"""Verified downloads against a real HTTP server on 127.0.0.1: caching, hash pinning, stalls, errors, locking.

``LocalServer`` is also used by test_bootloader.py.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgtool.bootloader import download
from imgtool.bootloader.download import DownloadError, DownloadSettings

#: Settings that keep failure tests fast: tiny timeout, no waiting between retries.
FAST = DownloadSettings(timeout=0.3, retries=0, backoff=0.0)
#: Longest a stalled handler waits before giving up on its own (the fixture releases it sooner).
STALL_LIMIT = 10.0
#: How often the server thread checks for shutdown; small so teardown is quick.
POLL_INTERVAL = 0.02
PAYLOAD = bytes(range(256)) * 200
#: A dripping server sends one byte this often: well inside any per-read timeout.
DRIP_INTERVAL = 0.005


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalServer:
    """An HTTP server on 127.0.0.1 that serves ``files`` and records every request path.

    ``stall[path]`` is "headers" (say nothing) or "body" (send headers, then nothing);
    ``fail_first[path]`` answers that many 503s first; ``redirect[path]`` answers 302 there;
    ``delay`` slows every answer, so concurrent clients overlap.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.stall: dict[str, str] = {}
        self.fail_first: dict[str, int] = {}
        self.redirect: dict[str, str] = {}
        self.delay = 0.0
        self.requests: list[str] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(POLL_INTERVAL,), daemon=True)

    def count(self, path: str) -> int:
        return self.requests.count(path)

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                with server._lock:
                    server.requests.append(path)
                    failures = server.fail_first.get(path, 0)
                    if failures:
                        server.fail_first[path] = failures - 1
                if server.delay:
                    time.sleep(server.delay)
                stall = server.stall.get(path)
                if stall == "headers":
                    server.release.wait(STALL_LIMIT)
                    return
                if failures:
                    self.send_error(503, "busy")
                    return
                if path in server.redirect:
                    self.send_response(302)
                    self.send_header("Location", server.redirect[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_error(404, "not found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if stall == "drip":  # one byte at a time, as long as the client reads
                    for byte in data:
                        if server.release.wait(DRIP_INTERVAL):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    return
                if stall == "body":
                    self.wfile.write(data[:100])
                    self.wfile.flush()
                    server.release.wait(STALL_LIMIT)
                    return
                self.wfile.write(data)

        return Handler


@pytest.fixture
def server():
    srv = LocalServer().start()
    yield srv
    srv.stop()


def leftovers(folder) -> list[str]:
    """Files in ``folder`` other than lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def test_downloads_verifies_and_stores(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "cache" / "f.bin"
    assert download.download(f"{server.url}/f.bin", dest, sha256=sha(PAYLOAD), settings=FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert server.count("/f.bin") == 1
    assert leftovers(dest.parent) == ["f.bin"]


def test_existing_verified_file_needs_no_request(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    dest.write_bytes(PAYLOAD)
    download.download(f"{server.url}/f.bin", dest, sha256=sha(PAYLOAD), settings=FAST)
    assert server.requests == []


def test_damaged_existing_file_is_replaced(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"junk")
    download.download(f"{server.url}/f.bin", dest, sha256=sha(PAYLOAD), settings=FAST)
    assert dest.read_bytes() == PAYLOAD


def test_hash_mismatch_names_both_hashes_and_keeps_nothing(server, tmp_path):
    tampered = PAYLOAD[:-1] + b"\x00"
    server.files["/f.bin"] = tampered
    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(DownloadError) as err:
        download.download(f"{server.url}/f.bin", dest, sha256=sha(PAYLOAD), settings=FAST)
    message = str(err.value)
    assert sha(PAYLOAD) in message and sha(tampered) in message
    assert "nothing was kept" in message
    assert leftovers(dest.parent) == []


def test_404_names_the_url(server, tmp_path):
    url = f"{server.url}/missing.bin"
    with pytest.raises(DownloadError, match="404") as err:
        download.download(url, tmp_path / "m.bin", sha256=sha(PAYLOAD), settings=DownloadSettings(retries=3))
    assert url in str(err.value)
    assert server.count("/missing.bin") == 1  # a 404 is not retried


@pytest.mark.parametrize("where", ["headers", "body"])
def test_stalled_server_times_out_clearly(server, tmp_path, where):
    server.files["/slow.bin"] = PAYLOAD
    server.stall["/slow.bin"] = where
    url = f"{server.url}/slow.bin"
    started = time.monotonic()
    with pytest.raises(DownloadError) as err:
        download.download(url, tmp_path / "slow.bin", sha256=sha(PAYLOAD), settings=FAST)
    assert time.monotonic() - started < STALL_LIMIT / 2
    assert f"timed out: {url} sent nothing for 0.3 s" in str(err.value)
    assert leftovers(tmp_path) == []


def test_transient_failures_are_retried_with_backoff(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.fail_first["/f.bin"] = 2
    settings = DownloadSettings(timeout=1.0, retries=2, backoff=0.01)
    download.download(f"{server.url}/f.bin", tmp_path / "f.bin", sha256=sha(PAYLOAD), settings=settings)
    assert server.count("/f.bin") == 3


def test_retries_run_out_with_a_count(server, tmp_path):
    server.fail_first["/f.bin"] = 5
    settings = DownloadSettings(timeout=1.0, retries=1, backoff=0.0)
    with pytest.raises(DownloadError, match=r"HTTP 503 .* after 2 attempts"):
        download.download(f"{server.url}/f.bin", tmp_path / "f.bin", sha256=sha(PAYLOAD), settings=settings)
    assert server.count("/f.bin") == 2


def test_unreachable_server_says_so(tmp_path):
    srv = LocalServer()  # bound but never serving: close it so the port refuses connections
    url = f"{srv.url}/f.bin"
    srv.httpd.server_close()
    with pytest.raises(DownloadError, match="cannot reach"):
        download.download(url, tmp_path / "f.bin", sha256=sha(PAYLOAD), settings=FAST)


def test_size_cap_refuses_large_bodies(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    settings = DownloadSettings(timeout=1.0, retries=0, max_bytes=1000)
    with pytest.raises(DownloadError, match="larger than the 1000-byte limit"):
        download.download(f"{server.url}/big.bin", tmp_path / "big.bin", sha256=sha(PAYLOAD), settings=settings)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "url",
    ["http://example.com/f.bin", "ftp://127.0.0.1/f.bin", "file:///etc/passwd", "http://10.0.0.1/f.bin"],
)
def test_only_https_or_loopback_http(tmp_path, url):
    with pytest.raises(DownloadError, match="only https://"):
        download.download(url, tmp_path / "f.bin", sha256=sha(PAYLOAD), settings=FAST)
    assert leftovers(tmp_path) == []


def test_redirect_to_plain_http_elsewhere_is_refused(server, tmp_path):
    server.redirect["/r.bin"] = "http://example.invalid/f.bin"
    with pytest.raises(DownloadError, match="refusing to download http://example.invalid/f.bin"):
        download.download(f"{server.url}/r.bin", tmp_path / "f.bin", sha256=sha(PAYLOAD), settings=FAST)


def test_redirect_on_loopback_is_followed(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.redirect["/r.bin"] = f"{server.url}/f.bin"
    download.download(f"{server.url}/r.bin", tmp_path / "f.bin", sha256=sha(PAYLOAD), settings=FAST)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_concurrent_fetches_share_one_download(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.delay = 0.2
    dest = tmp_path / "cache" / "f.bin"
    errors = []

    def fetch():
        try:
            download.download(f"{server.url}/f.bin", dest, sha256=sha(PAYLOAD), settings=DownloadSettings(timeout=5))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server.count("/f.bin") == 1
    assert dest.read_bytes() == PAYLOAD


def test_install_bytes_checks_before_storing(tmp_path):
    dest = tmp_path / "c" / "f.bin"
    with pytest.raises(DownloadError, match=sha(b"other")):
        download.install_bytes(b"other", dest, sha256=sha(PAYLOAD), source="mirror/f.bin")
    assert leftovers(dest.parent) == []
    download.install_bytes(PAYLOAD, dest, sha256=sha(PAYLOAD), source="mirror/f.bin")
    assert dest.read_bytes() == PAYLOAD


def test_progress_bar_only_on_an_interactive_terminal(monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert download._show_progress(quiet=True) is False
    monkeypatch.setenv("CI", "1")
    assert download._show_progress(quiet=False) is True  # $CI is the CLI's to read: it passes quiet
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert download._show_progress(quiet=False) is False


def test_a_dripping_server_meets_the_total_deadline(server, tmp_path, monkeypatch):
    """Every read gets a byte, so no per-read timeout fires; the total deadline still ends the download."""
    server.files["/f.bin"] = PAYLOAD
    server.stall["/f.bin"] = "drip"
    now = [0.0]

    def clock():  # one second passes per look at the clock: the deadline arrives after a few bytes
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(download, "_clock", clock)
    dest = tmp_path / "f.bin"
    settings = DownloadSettings(timeout=5.0, retries=2, backoff=0.0, deadline=10.0)
    with pytest.raises(DownloadError, match="did not arrive within 10 s"):
        download.download(f"{server.url}/f.bin", dest, sha256=sha(PAYLOAD), settings=settings)
    assert server.count("/f.bin") == 1 and leftovers(tmp_path) == []
