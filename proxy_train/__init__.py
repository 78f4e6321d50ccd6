"""MPT proxies on a mixture's MDS streams: model, attention backends, training, evaluation, ablations (torch)."""

from __future__ import annotations


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch (0 leaves torch's choice)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
