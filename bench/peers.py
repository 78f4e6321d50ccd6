"""Where bench/ finds its peers, and what to tell the user when one is missing.

Two kinds of peer:

- in this interpreter, installed by ``make bench-setup`` (the ``bench`` extra, datatrove with ``--no-deps``):
  datatrove's filters and PII formatter (bench.filters, bench.decontam, through bench/datatrove_peer.py) and
  TFDS's ``c4_utils`` (bench.c4_conformance);
- in a separate venv, because their dependencies clash with the lock (``--peer-python``, default
  ``/tmp/bench-venv/bin/python``): datatrove's and text-dedup's MinHash, run by bench/dedup_peers.py for
  bench.dedup_quality. :data:`PEER_VENV_SETUP` makes that venv;
- in its own venv (``--venv``, default ``/tmp/foundry-venv``): llm-foundry, which pins its own torch and streaming,
  run by bench/foundry_loader.py on a built run. :func:`foundry_venv_steps` makes it.

Scripts ask for a peer here; when it is absent they get :class:`PeerMissing` (or a message) saying
``peer X not installed: ...`` with the command that installs it, print that, and show ``n/a`` in its columns.

    python -m bench.peers [--peer-python PATH]     # which peers this machine has
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from bench import harness

SETUP_HINT = "run make bench-setup"
PEER_VENV = "/tmp/bench-venv"
DEFAULT_PEER_PYTHON = f"{PEER_VENV}/bin/python"
# The venv the dedup peers ran in for bench/RESULTS.md (datatrove 0.10.1 with spaCy, text-dedup 0.4.0).
PEER_VENV_SETUP = (f"python3 -m venv {PEER_VENV} && {PEER_VENV}/bin/pip install datatrove==0.10.1 spacy==3.8.18 "
                   "text-dedup==0.4.0")
# llm-foundry's venv: llm-foundry 0.22.0 pins torch>=2.7.0,<2.7.1 and mosaicml-streaming<0.13. PyPI's torch 2.7.0
# is a CUDA build (about 5 GB with its nvidia-* wheels; it runs on the CPU too). Resolving against today's index
# backtracks for a long time (wandb, google-api-core), so pip only considers files uploaded before the cut-off
# (llm-foundry 0.22.0 is from July 2025); that needs pip >= 26 (--uploaded-prior-to).
FOUNDRY_VENV = "/tmp/foundry-venv"
FOUNDRY_VERSION = "0.22.0"
FOUNDRY_TORCH = "2.7.0"
FOUNDRY_UPLOADED_PRIOR_TO = "2025-08-15T00:00:00Z"


def foundry_venv_steps(venv: str = FOUNDRY_VENV, python: str = "python3") -> list[list[str]]:
    """The commands that make llm-foundry's venv, in order."""
    pip = [f"{venv}/bin/python", "-m", "pip", "install", "--disable-pip-version-check"]
    return [[python, "-m", "venv", venv],
            [*pip, "--upgrade", "pip>=26", "setuptools<81", "wheel"],
            [*pip, "--uploaded-prior-to", FOUNDRY_UPLOADED_PRIOR_TO, f"llm-foundry=={FOUNDRY_VERSION}",
             f"torch=={FOUNDRY_TORCH}"]]


FOUNDRY_VENV_SETUP = " && ".join(" ".join(f"'{a}'" if any(c in a for c in "<>=") else a for a in step)
                                 for step in foundry_venv_steps())

MODULES: dict[str, tuple[str, ...]] = {
    "datatrove": ("datatrove", "spacy"),
    "tensorflow-datasets": ("tensorflow_datasets",),
    "text-dedup": ("text_dedup",),
    "llm-foundry": ("llmfoundry", "streaming", "torch"),
}
IN_PROCESS = ("datatrove", "tensorflow-datasets")
IN_VENV = ("datatrove", "text-dedup")


class PeerMissing(RuntimeError):
    """A peer is not installed (or not importable); the message says how to install it."""

    def __init__(self, peer: str, message: str) -> None:
        super().__init__(message)
        self.peer = peer


def missing_message(peer: str, where: str | None = None, detail: str | None = None,
                    hint: str = SETUP_HINT) -> str:
    return (f"peer {peer} not installed{f' in {where}' if where else ''}{f' ({detail})' if detail else ''}: "
            f"{hint}")


def skipped(err: PeerMissing) -> None:
    """Tell the user (on stderr) that a peer's columns will show n/a."""
    print(f"{err}; its columns show n/a", file=sys.stderr, flush=True)


def require(peer: str, modules: Sequence[str] | None = None) -> None:
    """Raise :class:`PeerMissing` unless every module of ``peer`` can be imported here."""
    for module in modules or MODULES[peer]:
        if importlib.util.find_spec(module) is None:
            detail = None if module == peer.replace("-", "_") else f"no module {module}"
            raise PeerMissing(peer, missing_message(peer, detail=detail))


def installed(peer: str) -> bool:
    try:
        require(peer)
    except PeerMissing:
        return False
    return True


# --- in this interpreter --------------------------------------------------------------------------------------------


def datatrove() -> types.ModuleType:
    """bench/datatrove_peer.py, once datatrove and spaCy are known to be installed."""
    require("datatrove")
    from bench import datatrove_peer

    return datatrove_peer


def datatrove_filters() -> dict[str, Any]:
    """datatrove's C4, Gopher and FineWeb filters (``datatrove_peer.load()``), or :class:`PeerMissing`."""
    peer = datatrove()
    try:
        return peer.load()
    except ImportError as err:  # installed without its run-time imports (loguru, humanize, ...)
        raise PeerMissing("datatrove", missing_message("datatrove", detail=str(err))) from err


def datatrove_pii() -> Callable[[str], str]:
    """datatrove's ``PIIFormatter().format`` (e-mail + IP), or :class:`PeerMissing`."""
    require("datatrove", ("datatrove",))
    try:
        from datatrove.pipeline.formatters.pii import PIIFormatter
    except ImportError as err:
        raise PeerMissing("datatrove", missing_message("datatrove", detail=str(err))) from err
    return PIIFormatter().format


def tfds_c4_utils() -> types.ModuleType:
    """TFDS ``c4_utils`` with its lazy ``tf`` replaced by a ``tf.compat.as_text`` pass-through.

    TFDS reaches TensorFlow only through ``tf.compat.as_text`` (a ``str`` pass-through here), so the 600 MB
    TensorFlow wheel is not needed.
    """
    require("tensorflow-datasets")
    c4_utils = importlib.import_module("tensorflow_datasets.text.c4_utils")

    def as_text(value: str | bytes) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else value

    c4_utils.tf = types.SimpleNamespace(compat=types.SimpleNamespace(as_text=as_text))
    return c4_utils


# --- in the separate peer venv --------------------------------------------------------------------------------------

_PROBE = "import importlib.util, sys; sys.exit(0 if all(importlib.util.find_spec(m) for m in sys.argv[1:]) else 1)"


def venv_peers(python: str, peers: Sequence[str] = IN_VENV) -> tuple[list[str], list[str]]:
    """The peers importable by interpreter ``python``, and a message for each one that is not.

    ``python == ''`` means peers are skipped on purpose: nothing found, no message.
    """
    if not python:
        return [], []
    hint = f"make it with: {PEER_VENV_SETUP} (or pass --peer-python PATH, '' to skip peers)"
    if shutil.which(python) is None:
        return [], [missing_message(p, where=python, detail="no such interpreter", hint=hint) for p in peers]
    found, messages = [], []
    for peer in peers:
        probe = subprocess.run([python, "-c", _PROBE, *MODULES[peer]], capture_output=True, check=False)
        if probe.returncode == 0:
            found.append(peer)
        else:
            messages.append(missing_message(peer, where=python, hint=hint))
    return found, messages


def run_in_venv(python: str, script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m bench.<script> ARGS`` from the repository root (so ``bench`` imports without installing)."""
    return subprocess.run([python, "-m", f"bench.{script}", *args], cwd=harness.REPO, check=True,
                          capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON,
                        help=f"interpreter of the separate peer venv (default {DEFAULT_PEER_PYTHON})")
    parser.add_argument("--foundry-venv", default=FOUNDRY_VENV, help=f"llm-foundry's venv (default {FOUNDRY_VENV})")
    args = parser.parse_args(argv)
    rows = []
    for peer in IN_PROCESS:
        try:
            require(peer)
            rows.append((peer, "this interpreter", "installed"))
        except PeerMissing as err:
            rows.append((peer, "this interpreter", str(err)))
    found, messages = venv_peers(args.peer_python)
    rows += [(peer, args.peer_python, "installed") for peer in found]
    rows += [(m.split()[1], args.peer_python, m) for m in messages]
    foundry_python = f"{args.foundry_venv}/bin/python"
    found = subprocess.run([foundry_python, "-c", _PROBE, *MODULES["llm-foundry"]], capture_output=True,
                           check=False).returncode == 0 if shutil.which(foundry_python) else False
    rows.append(("llm-foundry", foundry_python, "installed" if found else missing_message(
        "llm-foundry", where=foundry_python, hint=f"python -m bench.foundry_loader makes it: {FOUNDRY_VENV_SETUP}")))
    print(harness.table(["peer", "where", "status"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
