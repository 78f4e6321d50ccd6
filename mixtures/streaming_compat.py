"""The one place that imports ``streaming`` (mosaicml-streaming), with the torchvision shim CPU torch needs.

It also closes a race in streaming: ``StreamingDataset`` picks the first free shared-memory prefix by listing
``/dev/shm`` and then creates it, so two processes that start a dataset at the same moment can pick the same one
and one fails with ``FileExistsError: '/000NNN_locals'``. Outside ``torch.distributed`` (where the ranks of a node
coordinate through barriers inside that call), the pick-and-create runs under an exclusive ``flock`` on
``<tmp>/mixlab-streaming-prefix.lock``, so Mixlab's own processes on one machine never collide.

``streaming/__init__.py`` imports torchvision; the PyPI torchvision wheel is CUDA-linked and fails to register
its ``nms``/``qnms`` operators against a CPU torch (deps.md gotcha A). Defining those two operator schemas
first lets torchvision import; nothing in Mixlab calls them. Where torchvision loads normally this is a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

_TV_LIB = None  # keeps the torch.library.Library alive: its definitions vanish when it is collected


def _shim_torchvision() -> None:
    """Import torchvision, defining its C operators first if its compiled extension cannot load."""
    global _TV_LIB
    import torch

    try:
        import torchvision
    except RuntimeError:
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
        _TV_LIB = torch.library.Library("torchvision", "DEF")
        _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401


def import_streaming() -> ModuleType:
    """Return the ``streaming`` module, importing it safely (use this instead of ``import streaming``)."""
    if "streaming" not in sys.modules:
        _shim_torchvision()
    import streaming

    _serialise_prefix_choice()
    return streaming


PREFIX_LOCK = Path(tempfile.gettempdir()) / "mixlab-streaming-prefix.lock"


@contextlib.contextmanager
def _prefix_lock() -> Iterator[None]:
    with open(PREFIX_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, or when the process dies
        yield


def _serialise_prefix_choice() -> None:
    """Wrap streaming's ``get_shm_prefix`` (as ``StreamingDataset`` calls it) in :func:`_prefix_lock` (once)."""
    from streaming.base import dataset

    original: Callable[..., Any] = dataset.get_shm_prefix
    if getattr(original, "_mixlab_locked", False):
        return

    @functools.wraps(original)
    def locked(*args: Any, **kwargs: Any) -> Any:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # ranks meet at barriers inside: a lock would deadlock
            return original(*args, **kwargs)
        with _prefix_lock():
            return original(*args, **kwargs)

    locked._mixlab_locked = True  # type: ignore[attr-defined]
    dataset.get_shm_prefix = locked
