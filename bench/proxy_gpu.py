"""GPU check and timing of the MPT proxy: every attention backend against the reference, then MPT-125M training.

Run on a CUDA machine from the repository root (needs only torch; no streaming, no data):

    python -m bench.proxy_gpu                 # checks + 125m at seq 2048, batch 16, bf16
    python -m bench.proxy_gpu --steps 20 --batch 16 --backends flex,sdpa

Prints markdown tables: the card, a measured bf16 matmul peak, each backend's max error against the fp32
reference (forward and gradients), and per training variant tokens/s and MFU (llm-foundry's formula against
the measured peak). On a machine without CUDA it says so and exits 0.
"""

from __future__ import annotations

import sys

from bench import harness

TOLERANCE = 3e-2  # bf16 kernels against an fp32 reference, max abs error on unit-variance inputs


def matmul_peak(size: int = 8192, repeats: int = 20) -> float:
    """Best measured bf16 matmul throughput in FLOP/s."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        torch.cuda.synchronize()
        with harness.Timer() as t:
            for _ in range(10):
                a @ b
            torch.cuda.synchronize()
        best = max(best, 10 * 2 * size**3 / t.wall)
    return best


def check_backend(backend: str, heads: int = 12, seq: int = 1024, head_dim: int = 64) -> tuple[float, float]:
    """Max abs error of a backend's output and input gradients against the fp32 reference."""
    import torch

    from proxy_train.attention import attend
    from proxy_train.model import alibi_slopes

    torch.manual_seed(0)
    shape = (2, seq, heads, head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    slopes = torch.tensor(alibi_slopes(heads), device="cuda")
    grad_out = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    out = attend(q, k, v, slopes, backend)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    ref_in = [x.detach().float().requires_grad_() for x in (q, k, v)]
    ref = attend(*ref_in, slopes, "reference")
    ref_grads = torch.autograd.grad(ref, ref_in, grad_out.float())
    fwd = (out.float() - ref).abs().max().item()
    bwd = max((g.float() - r).abs().max().item() for g, r in zip(grads, ref_grads, strict=True))
    return fwd, bwd


def time_training(backend: str, batch: int, seq: int, steps: int, warmup: int, compile_model: bool) -> dict:
    """Tokens/s of MPT-125M training steps (bf16 autocast, fused AdamW, grad clip) on random tokens."""
    import torch

    from proxy_train.model import MPT, config_for

    torch.manual_seed(0)
    model = MPT(config_for("125m", vocab_size=50368, max_seq_len=seq, attn_backend=backend)).cuda()
    step_fn = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), fused=True)
    tokens = torch.randint(0, 50368, (batch, seq + 1), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    with harness.Timer() as warm:
        for _ in range(warmup):
            step()
        torch.cuda.synchronize()
    warm_s = warm.wall
    with harness.Timer() as timed:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    elapsed = timed.wall
    tps = steps * batch * seq / elapsed
    result = {"tokens_per_s": tps, "flops_per_s": tps * model.flops_per_token(seq), "warmup_s": warm_s,
              "params": model.num_params(), "memory_gb": torch.cuda.max_memory_allocated() / 1e9}
    return result


def main() -> int:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--backends", default=None, help="training variants (default: flash if installed, flex, sdpa)")
    args = parser.parse_args()
    import torch

    from proxy_train.attention import flash_available

    if not torch.cuda.is_available():
        print("proxy_gpu: no CUDA device here; nothing measured. Run this on a GPU machine "
              "(see docs/proxy.md, 'Running on a GPU').")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name()
    print(f"## proxy_gpu on {name} (torch {torch.__version__}, flash-attn installed: {flash_available()})\n")
    peak = matmul_peak()
    print(f"measured bf16 matmul peak: {peak / 1e12:.0f} TFLOP/s (8192^3, best of 20 x 10)\n")

    backends = (["flash"] if flash_available() else []) + ["flex", "sdpa"]
    checks = harness.Table(["backend", "fwd max abs err", "grad max abs err", "vs reference"])
    print(checks.header())
    failed = 0
    for backend in backends:
        fwd, bwd = check_backend(backend)
        ok = fwd < TOLERANCE and bwd < TOLERANCE
        failed += not ok
        print(checks.row(backend, f"{fwd:.2e}", f"{bwd:.2e}", f"{'ok' if ok else 'FAIL'} (tol {TOLERANCE})"))

    variants = args.backends.split(",") if args.backends else backends
    print(f"\nMPT-125M (ALiBi, no bias, tied), seq {args.seq}, batch {args.batch}, bf16 autocast, fused AdamW, "
          f"{args.steps} timed steps after {args.warmup} warm-up\n")
    training = harness.Table(["attention", "compiled", "params", "tokens/s", "TFLOP/s", "MFU (measured peak)",
                              "warm-up s", "peak mem GB"])
    print(training.header())
    for backend in variants:
        for compiled in (True, False) if backend == "sdpa" else (True,):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            r = time_training(backend, args.batch, args.seq, args.steps, args.warmup, compiled)
            print(training.row(backend, compiled, f"{r['params'] / 1e6:.1f}M", f"{r['tokens_per_s']:,.0f}",
                               f"{r['flops_per_s'] / 1e12:.0f}", f"{100 * r['flops_per_s'] / peak:.1f}%",
                               f"{r['warmup_s']:.0f}", f"{r['memory_gb']:.1f}"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
