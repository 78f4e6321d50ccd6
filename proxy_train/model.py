"""The MPT proxy model, top to bottom: config and sizes, ALiBi slopes, blocks, initialisation.

MPT as llm-foundry builds it with ``alibi: true, no_bias: true``: a decoder-only transformer with pre-LayerNorm
blocks (fused QKV attention, GELU MLP with expansion 4), ALiBi instead of position embeddings, no biases anywhere,
low-precision LayerNorm, and the output head tied to the token embedding. Attention kernels live in
:mod:`proxy_train.attention`; this file only calls :func:`proxy_train.attention.attend`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from proxy_train.attention import attend

# --------------------------------------------------------------------------------------------------------------
# Configuration. Shapes of 125m and 350m follow llm-foundry's scripts/train/yamls/pretrain/mpt-*.yaml.


@dataclass(frozen=True)
class MPTConfig:
    """Shape of an MPT model; ``vocab_size`` and ``max_seq_len`` come from the mixture's streams.yaml."""

    d_model: int
    n_heads: int
    n_layers: int
    expansion_ratio: int = 4
    vocab_size: int = 50368
    max_seq_len: int = 2048
    attn_backend: str = "auto"  # auto | flash | flex | sdpa | reference (see proxy_train.attention)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        """Plain dict for checkpoints and logs."""
        return asdict(self)


SIZES: dict[str, MPTConfig] = {
    # CPU size for tests and smoke runs: 6 heads exercises the non-power-of-two ALiBi slopes.
    "tiny": MPTConfig(d_model=96, n_heads=6, n_layers=2),
    # CPU preset for decisions on tiny copies: ~0.9M parameters at vocab 512 (docs/ablations.md, "Measured").
    "small": MPTConfig(d_model=128, n_heads=4, n_layers=4),
    "125m": MPTConfig(d_model=768, n_heads=12, n_layers=12),
    "350m": MPTConfig(d_model=1024, n_heads=16, n_layers=24),
}


def config_for(size: str, vocab_size: int, max_seq_len: int, attn_backend: str = "auto") -> MPTConfig:
    """The named size with the data's vocabulary and sequence length."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    return replace(SIZES[size], vocab_size=vocab_size, max_seq_len=max_seq_len, attn_backend=attn_backend)


# --------------------------------------------------------------------------------------------------------------
# ALiBi (Press et al. 2021): head h of n gets slope 2^(-8h/n) for n a power of two; otherwise the slopes of the
# nearest lower power of two c, then every other slope of 2c. Score(i, j) gets + slope * (j - i) for j <= i.


def alibi_slopes(n_heads: int) -> list[float]:
    """The ALiBi slope of each head, by the paper's formula (any head count)."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if n_heads & (n_heads - 1) == 0:
        return power_of_two(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


# --------------------------------------------------------------------------------------------------------------
# Layers


class LPLayerNorm(nn.LayerNorm):
    """LayerNorm computed in the autocast dtype (llm-foundry's low_precision_layernorm), without bias."""

    def __init__(self, d_model: int) -> None:
        super().__init__(d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        dtype = torch.get_autocast_dtype(x.device.type)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.layer_norm(x.to(dtype), self.normalized_shape, self.weight.to(dtype), None, self.eps)


class Attention(nn.Module):
    """Multi-head causal self-attention with ALiBi, fused QKV projection, no biases."""

    def __init__(self, cfg: MPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.Wqkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.out_proj._is_residual = True  # type: ignore[assignment]  # MPT's init scales residual outputs

    def forward(self, x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.Wqkv(x).view(b, t, 3, self.cfg.n_heads, self.cfg.head_dim).unbind(dim=2)
        y = attend(q, k, v, slopes, backend=self.cfg.attn_backend)  # (b, t, heads, head_dim)
        return self.out_proj(y.reshape(b, t, self.cfg.d_model))


class MLP(nn.Module):
    """Two projections with GELU between them, no biases."""

    def __init__(self, cfg: MPTConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(cfg.d_model, cfg.expansion_ratio * cfg.d_model, bias=False)
        self.down_proj = nn.Linear(cfg.expansion_ratio * cfg.d_model, cfg.d_model, bias=False)
        self.down_proj._is_residual = True  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: MPTConfig) -> None:
        super().__init__()
        self.norm_1 = LPLayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.norm_2 = LPLayerNorm(cfg.d_model)
        self.ffn = MLP(cfg)

    def forward(self, x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x), slopes)
        return x + self.ffn(self.norm_2(x))


# --------------------------------------------------------------------------------------------------------------
# The model


class MPT(nn.Module):
    """MPT causal language model with ALiBi and tied embeddings."""

    def __init__(self, cfg: MPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_f = LPLayerNorm(cfg.d_model)
        self.register_buffer("slopes", torch.tensor(alibi_slopes(cfg.n_heads), dtype=torch.float32),
                             persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """MPT's default init: kaiming-normal (fan_in, relu) weights; residual outputs / sqrt(2 * n_layers)."""
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if getattr(module, "_is_residual", False):
                with torch.no_grad():
                    module.weight.div_(math.sqrt(2 * self.cfg.n_layers))
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, seq, vocab) for token ids (batch, seq); with ``targets``, their mean cross-entropy.

        Computing the loss inside forward lets ``torch.compile`` fuse it with the output projection.
        """
        if tokens.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        x = self.wte(tokens)
        for block in self.blocks:
            x = block(x, self.slopes)
        logits = F.linear(self.norm_f(x), self.wte.weight)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over a batch of packed sequences."""
        return self(tokens[:, :-1], tokens[:, 1:])

    def num_params(self) -> int:
        """Parameter count (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token by llm-foundry's MFU formula: 3 * (2 * params + 2 * 2 * layers * d * seq)."""
        return 3 * (2 * self.num_params() + 2 * 2 * self.cfg.n_layers * self.cfg.d_model * seq_len)
