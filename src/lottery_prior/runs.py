"""One run identity and one resumable run base for every kind of run.

A run's *identity* is a JSON-ready dict of everything that decides its results: the content
of every input (image, observation, inpainting mask, ticket, data set), every setting resolved
to its value (no ``None`` standing for "the default"), the finder's settings, and the schema
version :data:`SCHEMA`. Where it runs (device, workers, Ray) is never part of it. The run's
folder is ``<root>/<prefix>-<hash>``, the hash taken over the identity (:func:`identity_hash`),
so two different runs never share a folder and the same run finds its own folder again;
sweep units are named the same way.

:class:`Run` owns the folder: one process at a time (:class:`~lottery_prior.files.RunLock`),
temporaries of killed writers removed, ``settings.json`` holding the identity (a folder that
holds another identity is refused), atomic writes, and reading a finished run's outputs
without the lock (:meth:`Run.finished`), so readers never wait for or block a writer.
Folders named by an earlier schema are renamed to their new name when first used, with a
message (nothing is recomputed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lottery_prior.errors import LipError
from lottery_prior.files import RunLock, remove_temporaries, write_json

log = logging.getLogger("lottery_prior")

SCHEMA = 2
"""Version of the run identities: 2 added the schema itself, resolved learned-mask steps,
content-addressed transfers and device-free unit ids (1: the identities of version 0.2)."""
SETTINGS = "settings.json"
T = TypeVar("T")


def digest(data: Any) -> str:
    """A short stable hash of JSON-ready data (keys sorted)."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def identity_hash(identity: Mapping[str, Any]) -> str:
    """The hash that names a run: its identity together with the schema version."""
    return digest({**identity, "schema": SCHEMA})


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def json_ready(data: Any) -> Any:
    """``data`` as plain JSON values (tuples become lists), as the identity is compared."""
    return json.loads(json.dumps(data, default=str))


class Run:
    """Base of every resumable run: a folder named by the run's identity.

    Subclasses set ``prefix``, provide :meth:`identity` and a ``root`` attribute, and do their
    work inside ``with self.opened():``. :meth:`finished` reads a complete run back without
    the lock (override :meth:`read_finished`).
    """

    prefix: ClassVar[str]
    root: Path

    def identity(self) -> dict[str, Any]:
        """Everything that decides the run's results (JSON-ready; no device)."""
        raise NotImplementedError

    def legacy_names(self) -> list[str]:
        """Folder names this run had under schema 1 (renamed when found): the same identity
        hashed without the schema version."""
        return [f"{self.prefix}-{digest(self.identity())}"]

    @cached_property
    def name(self) -> str:
        return f"{self.prefix}-{identity_hash(self.identity())}"

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.name

    def settings(self) -> dict[str, Any]:
        """What ``settings.json`` holds: the identity and the schema version."""
        return {**json_ready(self.identity()), "schema": SCHEMA}

    @contextlib.contextmanager
    def opened(self) -> Iterator[Path]:
        """Exclusive use of the folder: locked (a second process is refused at once, naming
        the holder), temporaries of killed writers removed, ``settings.json`` claimed."""
        self.migrate()
        with RunLock(self.folder):
            remove_temporaries(self.folder)
            self._claim()
            yield self.folder

    def finished(self) -> Any | None:
        """The run's outputs if it has finished and they read back intact, else None; never
        takes the lock (a finished run is only read)."""
        self.migrate()
        if not self.folder.is_dir():
            return None
        try:
            return self.read_finished()
        except LipError as err:
            log.warning("%s: %s", self.folder, one_line(err))
            return None

    def read_finished(self) -> Any | None:
        """Read the finished outputs (None if not finished; LipError if damaged)."""
        raise NotImplementedError

    def migrate(self) -> None:
        """Rename a folder named by an earlier schema to this run's name (once)."""
        if self.folder.exists():
            return
        for old in self.legacy_names():
            legacy = Path(self.root) / old
            if old == self.name or not legacy.is_dir():
                continue
            try:
                with RunLock(legacy) as lock:
                    os.rename(legacy, self.folder)
                    lock.path = self.folder / RunLock.NAME  # released in its new place
                    write_json(self.folder / SETTINGS, self.settings())
            except OSError as err:
                raise LipError(f"cannot rename {legacy} to {self.folder} ({err.strerror}); "
                               "rename it by hand") from None
            log.warning("run folder %s renamed to %s (run identities now carry schema %d; "
                        "nothing recomputed)", legacy, self.folder.name, SCHEMA)
            return

    def _claim(self) -> None:
        path = self.folder / SETTINGS
        wanted = self.settings()
        if path.is_file():
            held = read_json(path)
            if held is not None and held != wanted:
                raise LipError(f"{self.folder} holds the outputs of another run (its {SETTINGS} "
                               "differs); give another --out, or remove that folder")
            if held == wanted:
                return
        write_json(path, wanted)


def read_json(path: Path) -> dict | None:
    """A JSON object read from ``path``, or None if it is missing, unreadable or not a dict."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_stage(path: Path, check: Callable[[dict], bool], what: str) -> dict:
    """A stage's JSON record: LipError naming the file if it is missing, damaged or fails
    ``check`` (the caller recomputes the stage)."""
    if not path.is_file():
        raise LipError(f"{what} is missing ({path})")
    data = read_json(path)
    if data is None or not check(data):
        raise LipError(f"{path} is not a complete {what}")
    return data


def one_line(err: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(err).split()) or type(err).__name__
