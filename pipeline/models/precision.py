"""Which numeric precision a training run uses on this hardware.

``precision: auto`` (the default of every config) autocasts the forward pass to bfloat16 only
where the hardware has native bf16 arithmetic, and stays in fp32 elsewhere:

* a CPU whose flags include ``avx512_bf16`` or ``amx_bf16`` (Linux ``/proc/cpuinfo``);
  measured on a 2-core AMD EPYC with AVX512-BF16 (no AMX): one all-mpnet-base-v2 forward +
  backward of 32 x 40 tokens took 2.2 s in bf16 against 4.8 s in fp32;
* a CUDA device for which ``torch.cuda.is_bf16_supported()`` holds.

Without those units torch emulates bf16 and it is slow: on a 2-core AMD EPYC with AVX2 only,
one all-mpnet-base-v2 training step took 287 s under bf16 autocast against 11 s in fp32. An
explicit ``precision: bf16`` on such a CPU is honoured, with one warning that says so.

Scoring makes the same choice (``senbert score --precision``, :func:`inference_autocast` around
the forward pass): ``auto`` is bf16 where the hardware has native bf16, fp32 elsewhere. Measured
on MOSI valid with the default model (docs/scoring.md): bf16 changes the MAE by under 0.001;
int8 dynamic quantization of the text encoder, also measured, moved it by 0.38 and is not
offered.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_warned: set[str] = set()


@dataclass(frozen=True)
class Capabilities:
    """What the hardware offers for bf16; tests inject their own."""

    cpu_model: str
    cpu_flags: frozenset[str]
    cuda_bf16: bool = False

    @property
    def cpu_native_bf16(self) -> bool:
        return any(f in self.cpu_flags for f in NATIVE_BF16_CPU_FLAGS)

    def describe(self) -> str:
        simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in self.cpu_flags]
        return f"{self.cpu_model} ({', '.join(simd) or 'no AVX2/AVX-512/AMX'}; native bf16: " \
               f"{'yes' if self.cpu_native_bf16 else 'no'})"


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def capabilities(device: str | torch.device = "cpu") -> Capabilities:
    model, flags = _cpuinfo()
    dev = torch.device(device)
    cuda_bf16 = bool(dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return Capabilities(model, flags, cuda_bf16)


def native_bf16(device: str | torch.device, caps: Capabilities) -> bool:
    return caps.cuda_bf16 if torch.device(device).type == "cuda" else caps.cpu_native_bf16


def resolve_precision(requested: str, device: str | torch.device = "cpu",
                      caps: Capabilities | None = None) -> str:
    """``fp32`` or ``bf16`` for ``requested`` (``auto``, ``fp32`` or ``bf16``) on ``device``."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {requested!r}")
    caps = caps or capabilities(device)
    native = native_bf16(device, caps)
    if requested == "auto":
        chosen = "bf16" if native else "fp32"
        log.info("precision auto -> %s on %s", chosen,
                 caps.describe() if torch.device(device).type == "cpu" else f"{device} (bf16: {caps.cuda_bf16})")
        return chosen
    if requested == "bf16" and not native and str(device) not in _warned:
        _warned.add(str(device))
        log.warning("precision: bf16 on %s, which has no native bf16 arithmetic: torch emulates it, which was "
                    "measured 26x slower than fp32 for an all-mpnet-base-v2 training step on an AVX2-only CPU. "
                    "Use precision: auto or fp32 here.", caps.describe() if torch.device(device).type == "cpu"
                    else device)
    return requested


def inference_autocast(precision: str, device: str | torch.device = "cpu") -> Any:
    """The context a forward pass in ``precision`` runs in (bf16: autocast; else none)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")

