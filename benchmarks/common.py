"""What the benchmarks share: naming the device a figure was measured on, and training a run with the CLI."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


def train_run(root: Path, name: str, args: list[str], fresh: bool) -> tuple[list[str], float]:
    """`textae train` into root/name, as a user would, unless a finished run of the same command is there
    (and not `fresh`); returns the command and the wall minutes the training took. A finished run whose
    recorded command differs is trained again, so no figure is read off a model trained otherwise."""
    out = root / name
    command = ["textae", "train", "--output", str(out), "--no-progress", *args]
    record = out / "command.json"
    finished = (out / "final" / "model.safetensors").is_file()
    same = record.is_file() and json.loads(record.read_text()) == command
    if fresh or not finished or not same:
        why = "--fresh" if fresh else "its recorded command differs" if finished else "no finished run"
        shutil.rmtree(out, ignore_errors=True)
        print(f"--- {name} ({why}): {' '.join(command)}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "textae", *command[1:]], check=True)
        (out / "wall_minutes.txt").write_text(f"{(time.perf_counter() - start) / 60:.2f}\n")
        record.write_text(json.dumps(command) + "\n")
    return command, float((out / "wall_minutes.txt").read_text())
