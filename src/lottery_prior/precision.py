"""Numeric precision of a fit: the one this machine runs fast, chosen by measuring.

=========  ===============================================================================
``fp32``   float32, contiguous tensors: the reference
``fp32-cl``  float32, channels_last tensors (faster for convolutions on some machines)
``bf16``   bfloat16 autocast, channels_last: fast where the hardware has native bf16 (CPUs
           with AMX or AVX-512 BF16, GPUs from compute capability 8.0); *emulated* and about
           5x slower than fp32 elsewhere (AVX2-only CPUs)
``fp16``   float16 autocast, channels_last, loss scaling: for CUDA GPUs (T4, V100, ...)
``auto``   the fastest of the candidates this device supports, measured: a few Adam steps
           of each on the run's own network and image size, once per machine (cached, with
           the torch version and the CPU or GPU name); an fp32 variant within 5% of the
           fastest is preferred, since it changes no number
=========  ===============================================================================

``auto`` is resolved before a run's identity is taken (:mod:`lottery_prior.runs`), like
every default: a concrete precision changes the numbers bit for bit, so it is part of what
names an IMP run and a sweep unit. An IMP run resumed on a machine where ``auto`` resolves
otherwise is therefore another run (its own folder): one run never mixes precisions, and all
fits of one comparison run in its search's precision. The cache lives in ``$LIP_CACHE``, else
``$XDG_CACHE_HOME/lottery_prior``, else ``~/.cache/lottery_prior`` (``lip doctor`` shows it).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lottery_prior.errors import LipError
from lottery_prior.files import write_json

log = logging.getLogger("lottery_prior")

PRECISIONS = ("auto", "fp32", "fp32-cl", "bf16", "fp16")
FP32 = ("fp32", "fp32-cl")  # change no number: preferred by auto when within PREFER of the best
PREFER = 1.05
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Mode:
    """How a concrete precision runs: the autocast dtype (None: fp32), the memory format,
    and whether the loss is scaled (fp16)."""

    name: str
    dtype: torch.dtype | None
    channels_last: bool
    scaled: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def scaler(self, device: torch.device):
        """A gradient scaler for fp16 (None otherwise)."""
        return torch.amp.GradScaler(device.type) if self.scaled else None


MODES = {
    "fp32": Mode("fp32", None, False),
    "fp32-cl": Mode("fp32-cl", None, True),
    "bf16": Mode("bf16", torch.bfloat16, True),
    "fp16": Mode("fp16", torch.float16, True, scaled=True),
}


def check_precision(name: object) -> str:
    """A precision name, or a one-line LipError listing them."""
    if name not in PRECISIONS:
        raise LipError(f"unknown precision {name!r}; use {', '.join(PRECISIONS)}")
    return name  # type: ignore[return-value]


def mode(name: str, device: torch.device) -> Mode:
    """The :class:`Mode` of a concrete precision on ``device`` (refusing what it cannot run;
    warning once if bf16 is emulated there)."""
    check_precision(name)
    if name == "auto":
        raise LipError("precision 'auto' must be resolved first (lottery_prior.precision."
                       "resolve)")
    if name not in candidates(device):
        raise LipError(f"precision {name} does not run on {device.type}; use "
                       f"{', '.join(candidates(device))} or auto")
    if name == "bf16" and device.type == "cpu" and not native_bf16():
        _warn_emulated()
    return MODES[name]


@cache
def _warn_emulated() -> None:
    log.warning("bf16 on this CPU (%s: no AVX-512 BF16 or AMX) is emulated and about 5x slower "
                "than fp32; use --precision auto or fp32", device_name(torch.device("cpu")))


def candidates(device: torch.device) -> list[str]:
    """The precisions a device can run: on a CPU fp32, fp32-cl and bf16 (natively or
    emulated: measured either way); on CUDA also fp16, and bf16 where it is supported."""
    if device.type == "cuda":
        bf16 = ["bf16"] if torch.cuda.is_bf16_supported() else []
        return ["fp32", "fp32-cl", *bf16, "fp16"]
    return ["fp32", "fp32-cl", "bf16"]


def native_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX); a hint for the
    warning and ``lip doctor``, never a substitute for measuring."""
    if os.environ.get("LIP_CPU_BF16") in ("0", "1"):  # to exercise both paths anywhere
        return os.environ["LIP_CPU_BF16"] == "1"
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, c, lambda: False)() for c in checks)


@cache
def device_name(device: torch.device) -> str:
    """The CPU's model name or the GPU's name (what a measurement and a result were on)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def capabilities(device: torch.device) -> str:
    """What the hardware offers, in a few words (for ``lip doctor``)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return (f"compute capability {major}.{minor}; bf16 "
                f"{'native' if torch.cuda.is_bf16_supported() else 'not supported'}")
    return (f"{torch.backends.cpu.get_cpu_capability()}; bf16 "
            f"{'native' if native_bf16() else 'emulated (slow)'}")


# --- measuring -------------------------------------------------------------------------------

def step_ms(model: nn.Module, z: Tensor, name: str, *, steps: int = 5,
            warmup: int = 2) -> float:
    """Median milliseconds of one Adam step of a DIP fit in precision ``name``, measured on
    a copy of ``model`` on its device."""
    device = next(model.parameters()).device
    run = MODES[name]
    net = copy.deepcopy(model).to(memory_format=run.memory_format).train()
    x = z.to(device, memory_format=run.memory_format)
    target = torch.rand(net(x).shape, device=device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    scaler = run.scaler(device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with run.autocast(device):
            out = net(x)
        loss = F.mse_loss(out.float(), target)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def machine_load() -> tuple[float, int] | None:
    """The 1-minute load average and the number of CPUs (None where the OS cannot say)."""
    try:
        return os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return None


def busy(entry: dict) -> str:
    """Why a cached measurement's ms per step run high ("" when the machine was quiet):
    other work held the cores the measurement's threads needed."""
    load, cpus, threads = entry.get("load"), entry.get("cpus"), entry.get("threads", 1)
    if load is None or cpus is None or load + threads <= cpus + 0.5:
        return ""
    return f"measured while the machine was busy (load {load:.1f} on {cpus} cores)"


def choose(timings: dict[str, float]) -> str:
    """The precision ``auto`` takes from measured ms per step: the fastest, unless an fp32
    variant is within 5% of it (it changes no number)."""
    best = min(timings, key=timings.__getitem__)
    exact = [n for n in FP32 if n in timings]
    if exact:
        fastest_exact = min(exact, key=timings.__getitem__)
        if timings[fastest_exact] <= PREFER * timings[best]:
            return fastest_exact
    return best


# --- the cache ------------------------------------------------------------------------------

def cache_path() -> Path:
    base = os.environ.get("LIP_CACHE")
    if base:
        return Path(base) / "precision.json"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "lottery_prior" / "precision.json"


def read_cache() -> dict[str, dict]:
    """The cached choices (key -> entry); a damaged cache is ignored with a warning and
    rewritten on the next measurement."""
    path = cache_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CACHE_FORMAT or not isinstance(data.get("entries"), dict):
            raise ValueError("not a precision cache of this version")
        entries = data["entries"]
        if not all(isinstance(e, dict) and e.get("choice") in MODES for e in entries.values()):
            raise ValueError("an entry without a valid choice")
        return entries
    except (OSError, ValueError, AttributeError) as err:
        log.warning("ignoring the precision cache %s (%s); it will be measured again",
                    path, " ".join(str(err).split()))
        return {}


def cache_key(device: torch.device, model: str, options: dict, hw: tuple[int, int]) -> str:
    """What a choice depends on: the device (by name), the torch version, the network and
    the image size."""
    return json.dumps({"device": f"{device.type}:{device_name(device)}",
                       "torch": torch.__version__, "model": model, "options": options,
                       "size": list(hw)}, sort_keys=True, default=str)


def resolve(precision: str, device: torch.device, model: str, options: dict,
            probe: Callable[[], tuple[nn.Module, Tensor]], hw: tuple[int, int], *,
            measure: Callable[[nn.Module, Tensor, str], float] | None = None) -> str:
    """A concrete precision: ``precision`` itself, or for ``auto`` the cached choice for
    this device, torch, network and size, measured (on ``probe()``: the network and its
    input; ``measure(model, z, name)`` gives ms per step, :func:`step_ms` by default) and
    cached on first use."""
    check_precision(precision)
    if precision != "auto":
        mode(precision, device)  # refuse what the device cannot run, warn if emulated
        return precision
    key = cache_key(device, model, options, hw)
    entry = read_cache().get(key)
    if entry is not None:
        return entry["choice"]
    net, z = probe()
    net = net.to(device)
    log.info("measuring which precision runs fastest here (%s, %s %s at %dx%d; once per "
             "machine)", device_name(device), model, options, *hw)
    load = machine_load()
    context = {} if load is None else {"load": round(load[0], 2), "cpus": load[1],
                                       "threads": torch.get_num_threads()}
    if why := busy(context):
        log.warning("precision auto is %s: its ms per step run high and its choice may be off "
                    "(lip doctor shows the cache; delete it to measure again on a quiet "
                    "machine)", why)
    measure = measure or step_ms
    timings = {name: measure(net, z, name) for name in candidates(device)}
    choice = choose(timings)
    log.info("precision auto: %s (%s ms per step)", choice,
             ", ".join(f"{n} {t:.0f}" for n, t in timings.items()))
    entries = read_cache()
    entries[key] = {"choice": choice, "ms": {n: round(t, 2) for n, t in timings.items()},
                    "measured": datetime.datetime.now().isoformat(timespec="seconds"),
                    **context}
    write_json(cache_path(), {"format": CACHE_FORMAT, "entries": entries})
    return choice


def cached_choices() -> Iterator[tuple[dict, dict]]:
    """The cache's entries as (what was measured, the choice and timings)."""
    for key, entry in read_cache().items():
        yield json.loads(key), entry
