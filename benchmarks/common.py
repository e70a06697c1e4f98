"""What the benchmarks share: naming the device a figure was measured on."""

from __future__ import annotations

import platform

import torch


def device_name(device: str | torch.device | None = None) -> str:
    """The GPU's name when `device` is CUDA, else the CPU's; None means CUDA if torch sees a GPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        memory = torch.cuda.get_device_properties(device).total_memory
        return f"GPU {torch.cuda.get_device_name(device)}, {memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
