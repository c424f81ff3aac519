"""What the hardware computes natively, for settings that say "auto".

bf16 autocast pays only where the chip has bf16 arithmetic: CPUs with AVX-512 BF16 or AMX, and
CUDA GPUs that report it. Elsewhere oneDNN emulates it, converting every operand, and a step
is many times slower than fp32 (an AVX2-only AMD EPYC, one thread, `fast`'s batch of 192:
fp32 channels-last 44.9 ms, bf16 470.8 ms; `balanced`: 444 ms against 4,420 ms).
"""

from __future__ import annotations

import functools
from pathlib import Path

NATIVE_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # as /proc/cpuinfo names them


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo; empty where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device_type: str) -> bool:
    """Whether bf16 autocast is faster than fp32 on this device type ("cpu" or "cuda")."""
    if device_type == "cuda":
        import torch

        # including_emulation=False: pre-Ampere GPUs (T4, V100) report bf16 "supported" because torch emulates it
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(NATIVE_BF16_CPU_FLAGS & cpu_flags())


def plain_torch_version() -> str:
    """torch's version without its local build tag (2.14.1, not 2.14.1+cu130): the CPU and CUDA
    builds compute the same, and a cache keyed by the tag would go stale between them."""
    import torch

    return torch.__version__.split("+")[0]
