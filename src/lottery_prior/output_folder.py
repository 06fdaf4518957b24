"""Output folders of the commands: one run's outputs per folder, claimed before any work.

The default folder is ``<base>/<name>-<hash>``, the hash taken over the command's settings (and
the contents of its input files, e.g. a ticket or checkpoint), so other settings get another
folder and the same settings reuse theirs. Any folder, default or ``--out``, holding the
``settings.json`` of a run with other settings is refused, and an unwritable one or a file is
refused before any work. If the run fails before writing anything into a folder it found
empty, nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from lottery_prior.errors import LipError
from lottery_prior.files import write_json

SETTINGS = "settings.json"
# Arguments that do not change a run's results: not part of its identity.
NOT_SETTINGS = ("handler", "out", "quiet", "threads", "device")


def settings_hash(settings: dict) -> str:
    """A short stable hash of JSON-ready settings (run folders are named by it)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def command_settings(args: argparse.Namespace, files: Sequence[str] = ()) -> dict:
    """Every argument as JSON values, plus the content hashes of the input files named by the
    arguments in ``files`` (a path or a list of paths)."""
    settings = json.loads(json.dumps({k: v for k, v in vars(args).items() if k != "handler"},
                                     default=str))
    for key in files:
        value = getattr(args, key, None)
        if isinstance(value, list | tuple):
            settings[f"{key}_sha256"] = [file_sha256(v) for v in value]
        elif value is not None:
            settings[f"{key}_sha256"] = file_sha256(value)
    return settings


def _identity(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in NOT_SETTINGS}


@contextlib.contextmanager
def output_folder(args: argparse.Namespace, base: Path, name: str,
                  files: Sequence[str] = ()) -> Iterator[Path]:
    """Choose ``args.out`` (default ``base/<name>-<hash>``) and claim it: write its
    ``settings.json``, refusing a folder that holds another run's."""
    settings = command_settings(args, files)
    if args.out is None:
        args.out = base / f"{name}-{settings_hash(_identity(settings))[:8]}"
        settings["out"] = str(args.out)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise LipError(f"--out {out} is a file, not a folder; give a folder")
    previous = out / SETTINGS
    if previous.is_file():
        try:
            earlier = json.loads(previous.read_text())
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or _identity(earlier) != _identity(settings):
            raise LipError(f"{out} holds the outputs of another run (its {SETTINGS} differs); "
                           "give another --out, or remove that folder")
    fresh = not out.exists() or not any(out.iterdir())
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(previous, settings)
    except OSError as err:
        raise LipError(f"cannot write to {out} ({err.strerror}); give another --out") from None
    try:
        yield out
    except BaseException:
        if fresh and [p.name for p in out.iterdir()] == [SETTINGS]:
            previous.unlink()
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
