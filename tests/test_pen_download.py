"""train/pen_download.py against a real HTTP server on 127.0.0.1 serving UCI's archive format: a zip
holding pendigits-orig.tra.Z, made with Unix `compress` (Debian's ncompress) from the shared copy.
Also what `make train` says when MNIST cannot be downloaded."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest

from tests.stack import ROOT
from train import pen_data, pen_download, pendigits


def uci_archive(path, content: bytes):
    """A zip as UCI serves it: the strokes file compressed by `compress`, beside the other files."""
    if shutil.which("compress") is None:
        pytest.fail("Unix `compress` not found: install Debian's `ncompress` (.ci/run does)")
    compressed = subprocess.run(["compress", "-c"], input=content, capture_output=True, check=True).stdout
    assert compressed[:2] == b"\x1f\x9d"  # LZW's magic: what unlzw3 must decode
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pendigits-orig.names", "Pen-Based Recognition of Handwritten Digits\n")
        z.writestr(pen_download.MEMBER, compressed)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real HTTP server on a free loopback port, serving a directory of archives."""
    root = tmp_path_factory.mktemp("uci")
    real = (
        pendigits.SHARED_PATH.read_bytes() if pendigits.SHARED_PATH.exists() else pendigits.PATH.read_bytes()
    )
    uci_archive(root / "good.zip", real)
    tampered = bytearray(real)
    tampered[len(real) // 2] ^= 1  # one bit: a corrupted or substituted download
    uci_archive(root / "tampered.zip", bytes(tampered))
    (root / "not-a-zip.zip").write_bytes(b"<html>Service unavailable</html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", real
    httpd.shutdown()


def test_download_unpacks_checks_and_saves_the_file(server, tmp_path, capsys):
    url, real = server
    dest = tmp_path / "data" / "pen-digits" / "pendigits-orig.tra"
    assert pen_download.download(dest, f"{url}/good.zip") == dest
    assert dest.read_bytes() == real
    assert len(pendigits.load(dest)) == 7494
    assert "checksum right" in capsys.readouterr().out
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no partial file left


@pytest.mark.parametrize("name", ["tampered.zip", "not-a-zip.zip"])
def test_a_wrong_download_is_refused_and_nothing_is_saved(server, tmp_path, name):
    url, _ = server
    dest = tmp_path / "pendigits-orig.tra"
    with pytest.raises(pen_download.ChecksumError):
        pen_download.download(dest, f"{url}/{name}")
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_no_network_says_so_in_one_line_and_trains_on_mnist_alone(tmp_path, capsys, monkeypatch):
    with socket_closed() as port:
        monkeypatch.setattr(pen_download, "URL", f"http://127.0.0.1:{port}/pendigits.zip")
        path = tmp_path / "pendigits-orig.tra"
        assert pen_data.pen_training_set(path, 4, False, may_download=True) is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "cannot download" in lines[0] and "MNIST alone" in lines[0], lines


def test_training_downloads_pen_digits_when_absent(server, tmp_path, monkeypatch):
    """The path `make train` takes on a machine without ../shared: PEN_DIGITS unset, nothing in data/."""
    url, real = server
    monkeypatch.setattr(pen_download, "URL", f"{url}/good.zip")
    path = tmp_path / "data" / "pendigits-orig.tra"
    assert pen_data.available(path, may_download=True)
    assert path.read_bytes() == real


def test_mnist_that_cannot_be_downloaded_is_one_line_not_a_traceback(tmp_path):
    # Every download goes through a proxy that is not there: a machine without internet, made certain.
    with socket_closed() as port:
        proxy = f"http://127.0.0.1:{port}"
        env = {**os.environ, "MNIST_DIR": str(tmp_path), "https_proxy": proxy, "http_proxy": proxy}
        done = subprocess.run(
            [sys.executable, "-m", "train.train"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "point MNIST_DIR at a copy" in errors[0], done.stderr


class socket_closed:
    """A loopback port nothing listens on (bound, then closed)."""

    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc):
        return False
