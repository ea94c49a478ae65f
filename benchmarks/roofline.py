"""FLOPs executed by a piece of work and the matrix-product FLOP/s of this machine, for roofline figures."""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def counted_flops(fn) -> int:
    """FLOPs of the matrix products and attention that fn() runs, as executed (padding included). torch counts
    mm/addmm/bmm and the GPU attention kernels; the CPU attention kernel is added here."""
    mapping = {}
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is not None:
        mapping[cpu_attention] = _cpu_attention_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def matmul_flops_per_second(device="cpu", dtype=torch.float32, size: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of a size^3 matrix product on `device` in `dtype` (the current torch threads on CPU), best of
    repeated timings."""
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    wait = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    a @ b
    wait()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        wait()
        best = max(best, 2 * size ** 3 / (time.perf_counter() - start))
    return best
