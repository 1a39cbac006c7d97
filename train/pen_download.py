"""UCI's pen digits fetched when no copy is at hand, the way torchvision fetches MNIST: download,
check the checksum, keep the file in data/.

UCI serves the data set as one zip holding pendigits-orig.tra.Z (the training writers' strokes,
UNIPEN format) compressed with Unix `compress` (LZW), which unlzw3 decompresses. The checksum is of
the decompressed file (SHA-256 of the copy in ../shared/pen-digits, 3,641,673 bytes).
"""

import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import unlzw3

# The default of train/train.py's PEN_DIGITS_URL knob.
URL = "https://archive.ics.uci.edu/static/public/81/pen+based+recognition+of+handwritten+digits.zip"
MEMBER = "pendigits-orig.tra.Z"
SHA256 = "a66225d68d7d68591e62944df1ad33b3f5aa608e2df2505844b41f5568a80da4"
TIMEOUT = 30  # seconds without an answer: treated as no network


class ChecksumError(RuntimeError):
    pass


def download(dest: Path, url: str | None = None, sha256: str = SHA256) -> Path | None:
    """Fetch, unpack and check the file into dest. None (after one line saying so) when there is no
    network; ChecksumError, and nothing written, when what arrived is not the expected file."""
    url = url or URL
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            archive = response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"pen digits: cannot download {url} ({reason}): training on MNIST alone", flush=True)
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            name = next(n for n in z.namelist() if n.rsplit("/", 1)[-1] == MEMBER)
            data = unlzw3.unlzw(z.read(name))
    except (zipfile.BadZipFile, StopIteration, ValueError) as e:
        raise ChecksumError(f"{url} is not the pen digits archive (no readable {MEMBER}: {e!r})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ChecksumError(f"{url}: {MEMBER} has SHA-256 {got}, expected {sha256}; not used")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(dest)
    print(f"pen digits: downloaded {url}, checksum right, saved as {dest}", flush=True)
    return dest
