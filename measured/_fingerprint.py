"""What machine is this, and how busy is it? Provenance for every measurement the harness takes."""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import time

import psutil

from ._backends import recorded_packages
from ._records import Device

# Versions every device records: ours, numpy and what each backend needs (read from the backend table).
_PACKAGES = ("lowformer-nas", "numpy", *recorded_packages())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _board_model() -> str | None:
    # Jetson and Raspberry Pi name themselves here.
    try:
        with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
            return f.read().strip("\x00\n ") or None
    except OSError:
        return None


# /proc/cpuinfo fields that tell CPUs of one model name apart (x86: family/model/stepping/microcode; ARM:
# implementer/part/revision), and the instruction-set flags, which differ between hosts of one cloud type.
_IDENTITY_FIELDS = ("vendor_id", "cpu family", "model", "stepping", "microcode", "cache size", "model name",
                    "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "CPU revision", "Hardware",
                    "Revision")
_FLAG_FIELDS = ("flags", "Features")


def _cpu_identity() -> dict:
    """A richer CPU identity than the model name: the first processor's identifying /proc/cpuinfo fields,
    a digest of its feature flags and the cache sizes. Empty where /proc/cpuinfo cannot be read."""
    ident: dict = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if ident:
                        break  # the first processor's block is enough
                    continue
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in _IDENTITY_FIELDS and key not in ident:
                    ident[key] = value
                elif key in _FLAG_FIELDS and "flags_sha256" not in ident:
                    ident["flags_sha256"] = hashlib.sha256(" ".join(sorted(value.split())).encode()).hexdigest()[:16]
    except OSError:
        return {}
    caches = []
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(d, "level"), encoding="utf-8") as lf, open(os.path.join(d, "size"), encoding="utf-8") as sf:
                caches.append(f"L{lf.read().strip()}:{sf.read().strip()}")
        except OSError:
            continue
    if caches:
        ident["caches"] = ",".join(caches)
    return ident


def _identity_id(fp: dict) -> str:
    """12 hex digits naming the machine's CPU identity together with its arch, cores and memory."""
    keys = {k: fp.get(k) for k in ("arch", "cpu_model", "usable_cores", "memory_gb", "board")}
    blob = json.dumps({"identity": fp.get("cpu_identity", {}), **keys}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _gpu() -> dict | None:
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            return {
                "name": p.name,
                "memory_gb": round(p.total_memory / 2**30, 1),
                "cuda": torch.version.cuda,
                "driver": _nvidia_driver(),
                "count": torch.cuda.device_count(),
            }
    except ModuleNotFoundError:
        pass
    return None


def _nvidia_driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as f:
            m = re.search(r"Kernel Module\s+([\d.]+)", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def hardware_fingerprint() -> dict:
    """CPU model, cores, memory, GPU name and driver (when present), board, OS."""
    fp = {
        "cpu_model": _cpu_model(),
        "arch": platform.machine(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
    }
    board = _board_model()
    if board:
        fp["board"] = board
    fp["cpu_identity"] = _cpu_identity()
    fp["cpu_id"] = _identity_id(fp)
    gpu = _gpu()
    if gpu:
        fp["gpu"] = gpu
    return fp


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


# Hex digits of the CPU identity appended to a device id: hosts that report the same model name, cores and
# memory (two cloud VMs of one type) still get different ids; what the identity cannot see, the drift check does.
ID_SUFFIX_LEN = 4


def local_device_id(fp: dict | None = None, gpu: bool = False) -> str:
    """A device id named after the hardware fingerprint and a short digest of the CPU identity, e.g.
    ``x86_64-amd-epyc-2c-24g-7f3a`` (``-<gpu>`` for CUDA runs)."""
    fp = fp or hardware_fingerprint()
    base = fp.get("board") or fp["cpu_model"]
    device_id = f"{fp['arch']}-{_slug(base)}-{fp['usable_cores']}c-{round(fp['memory_gb'])}g"
    cpu_id = fp.get("cpu_id") or _identity_id(fp)
    device_id += "-" + cpu_id[:ID_SUFFIX_LEN]
    if gpu and fp.get("gpu"):
        device_id += "-" + _slug(fp["gpu"]["name"])
    return device_id


def local_device(gpu: bool = False) -> Device:
    fp = hardware_fingerprint()
    name = fp.get("board") or fp["cpu_model"]
    if gpu and fp.get("gpu"):
        name = f"{fp['gpu']['name']} ({name})"
    return Device(local_device_id(fp, gpu), name, "gpu" if gpu else "cpu", fingerprint=dict(fp), source="harness")


_SUMMARY_KEYS = ("cpu_model", "arch", "usable_cores", "memory_gb")


def same_fingerprint(device: Device) -> bool:
    """Whether a stored device reports this machine's CPU model, arch, cores and memory (which two hosts of
    one cloud type share: not enough to call them one machine, see :func:`same_machine`)."""
    fp, other = hardware_fingerprint(), device.fingerprint or {}
    return all(other.get(k) == fp.get(k) for k in _SUMMARY_KEYS)


def same_machine(device: Device) -> bool:
    """Whether a stored device is this machine: its fingerprint agrees and it carries this machine's CPU
    identity. A device recorded without an identity (older versions, shipped data) is never this machine:
    two hosts with one fingerprint were measured 1.85x apart."""
    other = device.fingerprint or {}
    return same_fingerprint(device) and bool(other.get("cpu_id")) and other.get("cpu_id") == hardware_fingerprint()["cpu_id"]


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


class LoadMonitor:
    """CPU used by *other* processes while a block runs, in % of the whole machine.

    System-wide busy CPU time minus this process's own CPU time, over wall time x cores. A 1-thread
    measurement on an otherwise idle 2-core machine reads ~0 %; another process spinning one core
    reads ~50 %.
    """

    def __init__(self):
        self._proc = psutil.Process()
        self._cores = psutil.cpu_count(logical=True) or 1

    @staticmethod
    def _busy(t) -> float:
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)

    def __enter__(self) -> "LoadMonitor":
        self._wall = time.perf_counter()
        self._sys = self._busy(psutil.cpu_times())
        own = self._proc.cpu_times()
        self._own = own.user + own.system
        return self

    # /proc/stat counts in 10 ms ticks: over a shorter window a single tick reads as a busy machine, so
    # short blocks are extended by an idle tail (in which all busy time is other processes').
    MIN_WINDOW_S = 0.5

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._wall
        if wall < self.MIN_WINDOW_S:
            time.sleep(self.MIN_WINDOW_S - wall)
            wall = time.perf_counter() - self._wall
        own = self._proc.cpu_times()
        own_s = own.user + own.system - self._own
        sys_s = self._busy(psutil.cpu_times()) - self._sys
        self.other_pct = min(100.0, max(0.0, (sys_s - own_s) / max(wall * self._cores, 1e-9) * 100.0))
        self.own_pct = own_s / max(wall * self._cores, 1e-9) * 100.0
        self.wall_s = wall
