"""HTTP(S) source: the download resumes a partial file with a Range request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from device.updates.transfer import pack
from tests.updates.support import Keyring, Unit, current_version, to, wait_job
from tools.fleet import bundle_info, make_job


class Server:
    def __init__(self, data: bytes) -> None:
        self.data, self.ranges = data, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Range")
                outer.ranges.append(header)
                start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
                body = outer.data[start:]
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.data) - 1}/{len(outer.data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/bundle.tar"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(bundles: dict[str, Path]) -> Iterator[Server]:
    srv = Server(pack(bundles["v0.2.0"]))
    yield srv
    srv.httpd.shutdown()


def test_http_download_resumes_with_range(
    units: Callable[..., Unit], server: Server, keyring: Keyring, bundles: dict[str, Path], tmp_path: Path
) -> None:
    unit = units("dev")
    info, _ = bundle_info(bundles["v0.2.0"])
    envelope = make_job(
        info, keyring.signing, keyring.cert, source={"type": "http", "url": server.url}, targets=to(unit)
    )
    half = len(server.data) // 2
    # What a download cut off halfway leaves behind.
    part = tmp_path / "dev" / "state" / "updates" / "downloads" / f"{envelope['job']['id']}.part"
    part.write_bytes(server.data[:half])
    assert unit.device.command("update", envelope)["ok"]
    wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED",), 60)
    assert server.ranges == [f"bytes={half}-"]
    assert current_version(unit.root) == "0.2.0"


class CuttingServer:
    """Serves the bundle, but the first response promises it all and closes the connection after
    `cut` bytes; later requests honour Range. Each request records its Range header and how big the
    device's partial file was when it came in."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut
        self.part: Path | None = None  # the device's partial file, once the job id is known
        self.requests: list[tuple[str | None, int | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Range")
                part = outer.part
                outer.requests.append((header, part.stat().st_size if part and part.exists() else None))
                start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
                body = outer.data[start:]
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.data) - 1}/{len(outer.data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if len(outer.requests) == 1:
                    self.wfile.write(body[: outer.cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # cut off mid-body
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/bundle.tar"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_http_download_cut_off_midway_resumes_with_range(
    units: Callable[..., Unit], keyring: Keyring, bundles: dict[str, Path], tmp_path: Path
) -> None:
    unit = units("dev")
    info, _ = bundle_info(bundles["v0.2.0"])
    data = pack(bundles["v0.2.0"])
    cut = len(data) // 3
    srv = CuttingServer(data, cut)
    try:
        envelope = make_job(
            info, keyring.signing, keyring.cert, source={"type": "http", "url": srv.url}, targets=to(unit)
        )
        part = tmp_path / "dev" / "state" / "updates" / "downloads" / f"{envelope['job']['id']}.part"
        srv.part = part
        assert unit.device.command("update", envelope)["ok"]
        job = wait_job(unit.watcher, unit.id, envelope["job"]["id"], ("SUCCEEDED", "FAILED", "REJECTED"), 60)
        assert job["state"] == "SUCCEEDED", job
        # First a plain GET (cut off after `cut` bytes), then one Range request from exactly there, made
        # while the partial file still held those bytes.
        assert srv.requests == [(None, None), (f"bytes={cut}-", cut)]
        assert current_version(unit.root) == "0.2.0"
        assert not part.exists()  # verified, installed, the partial file cleaned up
    finally:
        srv.httpd.shutdown()
