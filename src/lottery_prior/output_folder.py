"""Output folders of the commands: one run's outputs per folder, claimed before any work.

A command's output folder is a :class:`~lottery_prior.runs.Run` whose identity is the
command's settings (every argument but where it runs and where it writes) and the contents of
its input files (a ticket, a checkpoint). The default folder is ``<base>/<name>-<hash>``, so
other settings get another folder and the same settings reuse theirs; any folder, default or
``--out``, holding the ``settings.json`` of another run is refused, one used by a running
command is refused naming it, and an unwritable one or a file is refused before any work. If
the command fails before writing anything into a folder it found empty, nothing is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lottery_prior.errors import LipError
from lottery_prior.runs import SETTINGS, Run, digest, file_sha256, identity_hash

# Arguments that do not change a run's results: not part of its identity.
NOT_SETTINGS = ("handler", "out", "quiet", "threads", "device")


def command_settings(args: argparse.Namespace, files: Sequence[str] = ()) -> dict:
    """Every argument that decides the results, as JSON values, plus the content hashes of
    the input files named by the arguments in ``files`` (a path or a list of paths)."""
    settings = json.loads(json.dumps({k: v for k, v in vars(args).items()
                                      if k not in NOT_SETTINGS}, default=str))
    for key in files:
        value = getattr(args, key, None)
        if isinstance(value, list | tuple):
            settings[f"{key}_sha256"] = [file_sha256(v) for v in value]
        elif value is not None:
            settings[f"{key}_sha256"] = file_sha256(value)
    return settings


@dataclass(eq=False)
class CommandRun(Run):
    """A command's outputs: in ``out``, or by default ``<root>/<stem>-<hash>``."""

    stem: str
    settings_: dict
    root: Path
    out: Path | None = None

    @property
    def prefix(self) -> str:  # type: ignore[override]
        return self.stem

    def identity(self) -> dict:
        return self.settings_

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.stem}-{identity_hash(self.settings_)[:8]}"

    def legacy_names(self) -> list[str]:
        return [] if self.out is not None else [f"{self.stem}-{digest(self.settings_)[:8]}"]

    @property
    def folder(self) -> Path:
        return self.out if self.out is not None else Path(self.root) / self.name


@contextlib.contextmanager
def output_folder(args: argparse.Namespace, base: Path, name: str,
                  files: Sequence[str] = ()) -> Iterator[Path]:
    """Choose ``args.out`` (default ``base/<name>-<hash>``) and claim it for the command:
    locked, its ``settings.json`` written (refusing a folder that holds another run's)."""
    run = CommandRun(name, command_settings(args, files), base, args.out)
    out = run.folder
    args.out = out
    check_writable(out)
    fresh = not any(out.iterdir())
    try:
        with run.opened():
            yield out
    except BaseException:
        if fresh and out.is_dir() and [p.name for p in out.iterdir()] == [SETTINGS]:
            (out / SETTINGS).unlink()
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def check_writable(folder: Path) -> None:
    """Refuse a folder that is a file or cannot be written, before any work."""
    if folder.exists() and not folder.is_dir():
        raise LipError(f"--out {folder} is a file, not a folder; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise LipError(f"cannot write to {folder} ({err.strerror}); give another --out") from err

