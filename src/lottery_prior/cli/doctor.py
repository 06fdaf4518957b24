"""``lip doctor``: what this machine runs, and the precisions measured fastest on it."""

from __future__ import annotations

import argparse
import platform

from lottery_prior import __version__


def add_doctor(sub: argparse._SubParsersAction) -> None:
    """Add ``lip doctor``."""
    p = sub.add_parser("doctor", help="this machine: devices, their bf16 support, and the "
                       "precisions measured fastest here", description=(
        "Print the library and torch versions, each device (the CPU's model and whether its "
        "bf16 is native or emulated; CUDA GPUs and their compute capability), and the "
        "precision choices cached by --precision auto with their measured ms per step."))
    p.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> None:
    import torch

    from lottery_prior.precision import (
        busy,
        cache_path,
        cached_choices,
        capabilities,
        device_name,
    )

    print(f"lottery_prior {__version__}, torch {torch.__version__}, python "
          f"{platform.python_version()}, {torch.get_num_threads()} CPU threads")
    devices = [torch.device("cpu")]
    devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    for device in devices:
        print(f"{device}: {device_name(device)} ({capabilities(device)})")
    if len(devices) == 1:
        print("cuda: not available")
    from lottery_prior.finders.classical import bm3d_missing, library_version

    print(f"classical methods: {library_version('scikit-image')}, "
          + (bm3d_missing() or library_version("bm3d")))
    print(f"precision cache: {cache_path()}")
    entries = list(cached_choices())
    if not entries:
        print("  no choices measured yet (--precision auto measures on first use)")
    for what, entry in entries:
        here = what["torch"] == torch.__version__ and any(
            what["device"] == f"{d.type}:{device_name(d)}" for d in devices)
        timings = ", ".join(f"{n} {ms:.1f}" for n, ms in entry["ms"].items())
        options = {k: v for k, v in what["options"].items() if v is not None}
        why = busy(entry)
        stale = ("" if here else "; another machine or torch") + (f"; {why}" if why else "")
        print(f"  {what['device']}, torch {what['torch']}, {what['model']} {options} at "
              f"{'x'.join(map(str, what['size']))}: {entry['choice']} (ms per step: {timings}; "
              f"measured {entry.get('measured', '?')}{stale})")
