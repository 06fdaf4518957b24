"""The ``lip`` command: parses arguments, calls the library, prints where results went.

Each command group lives in its own module (:mod:`~lottery_prior.cli.restore`,
:mod:`~lottery_prior.cli.tickets`, :mod:`~lottery_prior.cli.sweep`,
:mod:`~lottery_prior.cli.gan`, :mod:`~lottery_prior.cli.classify`,
:mod:`~lottery_prior.cli.doctor`), which registers its
sub-commands and handles them; the options they share are in :mod:`~lottery_prior.cli.args`.

Bad input (a ``LipError``) is reported on one line with exit status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lottery_prior import __version__
from lottery_prior.cli import classify, doctor, gan, restore, sweep, tickets
from lottery_prior.errors import LipError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lip", description="Lottery image priors: sparse deep image priors."
    )
    parser.add_argument("--version", action="version", version=f"lip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # in the order that `lip --help` lists them
    restore.add_fit(sub)
    tickets.add_find(sub)
    restore.add_eval(sub)
    restore.add_classical(sub)
    tickets.add_compare(sub)
    tickets.add_transfer(sub)
    sweep.add_sweep(sub)
    sweep.add_report(sub)
    tickets.add_demo(sub)
    gan.add_gan(sub)
    classify.add_classify(sub)
    doctor.add_doctor(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="lip: %(message)s", level=logging.INFO, stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except LipError as err:
        print(f"lip: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an input that cannot be read, a folder that cannot be made
        where = f" ({err.filename})" if err.filename else ""
        print(f"lip: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lip: interrupted", file=sys.stderr)
        return 130
    return 0
