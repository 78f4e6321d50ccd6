"""The MPT proxy model: ALiBi slopes, attention backends agreeing, shapes of the shipped sizes."""

from __future__ import annotations

import math

import pytest
import torch

from proxy_train.attention import alibi_bias, attend, choose_backend
from proxy_train.model import MPT, SIZES, alibi_slopes, config_for

torch.set_num_threads(1)


def test_alibi_slopes_power_of_two_heads_follow_the_paper() -> None:
    assert alibi_slopes(8) == pytest.approx([2.0 ** -(i + 1) for i in range(8)])


def test_alibi_slopes_for_12_heads_interleave_the_next_power_of_two() -> None:
    expected = [2.0 ** -(i + 1) for i in range(8)] + [2.0 ** -0.5, 2.0 ** -1.5, 2.0 ** -2.5, 2.0 ** -3.5]
    assert alibi_slopes(12) == pytest.approx(expected)


def test_alibi_slopes_for_6_heads() -> None:
    assert alibi_slopes(6) == pytest.approx([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3])


def test_alibi_bias_is_minus_slope_times_distance_and_causal() -> None:
    bias = alibi_bias(torch.tensor([0.5, 0.25]), 4, torch.float32)[0]
    assert bias[0, 3, 1] == pytest.approx(-0.5 * 2)
    assert bias[1, 2, 2] == 0
    assert math.isinf(bias[1, 1, 3]) and bias[1, 1, 3] < 0


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_cpu_backends_agree_with_the_reference(backend: str) -> None:
    torch.manual_seed(0)
    grad = backend != "flex"  # FlexAttention has no backward on CPU; the GPU script checks it there
    q, k, v = (torch.randn(2, 48, 6, 16, requires_grad=grad) for _ in range(3))
    slopes = torch.tensor(alibi_slopes(6))
    ref = attend(q, k, v, slopes, "reference")
    out = attend(q, k, v, slopes, backend)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    if not grad:
        return
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.sum(), (q, k, v))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=5e-5, rtol=1e-4)


def test_auto_backend_on_cpu_is_sdpa_and_flash_needs_cuda() -> None:
    assert choose_backend("cpu") == "sdpa"
    with pytest.raises(ValueError, match="flash"):
        choose_backend("cpu", "flash")
    with pytest.raises(ValueError, match="unknown attention backend"):
        choose_backend("cpu", "xformers")


@pytest.mark.parametrize(("size", "low", "high"), [("125m", 110e6, 130e6), ("350m", 330e6, 370e6)])
def test_llm_foundry_sizes_have_their_parameter_counts_and_no_biases(size: str, low: float, high: float) -> None:
    with torch.device("meta"):
        model = MPT(config_for(size, vocab_size=50368, max_seq_len=2048))
    assert low < model.num_params() < high
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert model.wte.weight is not None and not any("lm_head" in n for n, _ in model.named_parameters())


def test_model_is_causal_and_residual_projections_are_scaled() -> None:
    torch.manual_seed(0)
    model = MPT(config_for("tiny", vocab_size=256, max_seq_len=32)).eval()
    tokens = torch.randint(0, 256, (1, 32))
    changed = tokens.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[0, :20], b[0, :20])
    assert not torch.allclose(a[0, 20:], b[0, 20:])
    fan_in = SIZES["tiny"].d_model
    up, down = model.blocks[0].ffn.up_proj.weight, model.blocks[0].attn.out_proj.weight
    assert up.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
    assert down.std().item() == pytest.approx(math.sqrt(2 / fan_in) / math.sqrt(2 * 2), rel=0.1)


def test_low_precision_layernorm_runs_in_the_autocast_dtype() -> None:
    model = MPT(config_for("tiny", vocab_size=128, max_seq_len=16))
    x = torch.randn(2, 16, SIZES["tiny"].d_model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.norm_f(x).dtype == torch.bfloat16
    assert model.norm_f(x).dtype == torch.float32


def test_sequences_longer_than_max_seq_len_are_refused() -> None:
    model = MPT(config_for("tiny", vocab_size=64, max_seq_len=8))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
