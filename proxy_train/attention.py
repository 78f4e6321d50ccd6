"""Causal ALiBi attention behind one function, :func:`attend`, with interchangeable backends.

Backends (all take q, k, v as (batch, seq, heads, head_dim) and per-head ALiBi slopes; score(i, j) gets
``+ slope * (j - i)`` for j <= i and -inf above the diagonal):

- ``flash``: flash-attn's ``flash_attn_func(..., causal=True, alibi_slopes=...)``; CUDA, fp16/bf16, needs the
  optional ``flash-attn`` package (source-only on PyPI). No bias tensor is materialised.
- ``flex``: PyTorch FlexAttention with an ALiBi ``score_mod`` and a causal block mask; compiled on CUDA, eager
  elsewhere (slow, for checks only).
- ``sdpa``: ``scaled_dot_product_attention`` with an additive float bias (ALiBi + causal -inf). SDPA's flash
  kernel rejects any bias, so on CUDA this runs the memory-efficient or cuDNN kernel.
- ``reference``: explicit fp32 softmax(q k^T / sqrt(d) + bias) v; the ground truth the others are checked against.

``auto`` picks flash when importable on CUDA, else flex on CUDA, else sdpa.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import torch
import torch.nn.functional as F

BACKENDS = ("flash", "flex", "sdpa", "reference")


def flash_available() -> bool:
    """Whether the flash-attn package is installed."""
    return importlib.util.find_spec("flash_attn") is not None


def choose_backend(device: torch.device | str, requested: str = "auto") -> str:
    """The backend to use on ``device``: the requested one if it can run there, else the best available."""
    device = torch.device(device)
    if requested not in ("auto", *BACKENDS):
        raise ValueError(f"unknown attention backend {requested!r}; choose auto or one of {', '.join(BACKENDS)}")
    if requested == "flash" and (device.type != "cuda" or not flash_available()):
        raise ValueError("attention backend 'flash' needs CUDA and the flash-attn package "
                         "(pip install flash-attn --no-build-isolation)")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "flash" if flash_available() else "flex"
    return "sdpa"


def alibi_bias(slopes: torch.Tensor, seq_len: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive (1, heads, seq, seq) bias: ALiBi below the diagonal, -inf above it."""
    pos = torch.arange(seq_len, device=slopes.device)
    rel = (pos[None, :] - pos[:, None]).to(torch.float32)  # j - i
    bias = slopes.to(torch.float32)[:, None, None] * rel[None]
    bias = bias.masked_fill(rel[None] > 0, float("-inf"))
    return bias[None].to(dtype)


@functools.lru_cache(maxsize=8)
def _cached_bias(slopes: torch.Tensor, seq_len: int, dtype: torch.dtype) -> torch.Tensor:
    """The bias for one model's slopes buffer (cached by tensor identity: no host sync per call)."""
    return alibi_bias(slopes, seq_len, dtype)


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    qh, kh, vh = (x.transpose(1, 2).float() for x in (q, k, v))
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(q.shape[-1])
    probs = torch.softmax(scores + alibi_bias(slopes, q.shape[1], torch.float32), dim=-1)
    return (probs @ vh).transpose(1, 2).to(q.dtype)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling():
        bias = alibi_bias(slopes, q.shape[1], q.dtype)
    else:
        bias = _cached_bias(slopes, q.shape[1], q.dtype)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias)
    return out.transpose(1, 2)


@functools.lru_cache(maxsize=8)
def _causal_block_mask(seq_len: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, None, None, seq_len, seq_len,
                             device=device)


@functools.lru_cache(maxsize=2)
def _flex_kernel(compiled: bool):
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if compiled else flex_attention


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    slopes = slopes.to(torch.float32)

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)

    kernel = _flex_kernel(q.device.type == "cuda")
    mask = _causal_block_mask(q.shape[1], str(q.device))
    out = kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), score_mod=score_mod, block_mask=mask)
    return out.transpose(1, 2)


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    from flash_attn import flash_attn_func

    return flash_attn_func(q, k, v, causal=True, alibi_slopes=slopes.to(torch.float32))


_IMPLS = {"flash": _flash, "flex": _flex, "sdpa": _sdpa, "reference": _reference}


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor,
           backend: str = "auto") -> torch.Tensor:
    """Causal ALiBi attention; q, k, v and the result are (batch, seq, heads, head_dim)."""
    name = choose_backend(q.device, backend) if backend == "auto" else backend
    return _IMPLS[name](q, k, v, slopes)
