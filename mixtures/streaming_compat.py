"""The one place that imports ``streaming`` (mosaicml-streaming), with the torchvision shim CPU torch needs.

``streaming/__init__.py`` imports torchvision; the PyPI torchvision wheel is CUDA-linked and fails to register
its ``nms``/``qnms`` operators against a CPU torch (deps.md gotcha A). Defining those two operator schemas
first lets torchvision import; nothing in Mixlab calls them. Where torchvision loads normally this is a no-op.
"""

from __future__ import annotations

import sys
from types import ModuleType

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

    return streaming
