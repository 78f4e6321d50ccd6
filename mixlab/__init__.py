"""Mixlab's top floor: the ``mixlab`` command line and the one orchestrator of jobs (:mod:`mixlab.jobs`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mixlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
