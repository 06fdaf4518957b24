"""MkDocs hooks: the pages generated from the code, and the committed benchmark figures.

* ``reference/cli.md``: every ``lip`` command and option, from ``lottery_prior.cli.build_parser``
  (sub-commands of ``gan`` and ``classify`` included);
* ``reference/spec.md``: every key of an experiment spec, its type, default and bounds, from
  the validator's own tables (``lottery_prior.experiments.spec.SECTIONS``);
* ``reference/finders.md``: the finder registry (``lottery_prior.finders.REGISTRY``);
* ``examples/<name>.md``: one page per gallery script ``docs/examples/<name>.py``;
* ``changelog.md``: ``CHANGELOG.md``;
* ``benchmarks/results/**.png``: the committed figures, served from where they are in git
  (never copied into ``docs/``), so pages link them as ``../benchmarks/results/...``.

The generators are plain functions, so the tests call them too.
"""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
FIGURES = "benchmarks/results"


def _cell(text: object) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, and ``<`` and ``>`` outside
    code spans escaped (help texts say ``lip-out/fit/<image>-…``: raw, a browser reads
    ``<image>`` as an image tag)."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


# ---------------------------------------------------------------- CLI reference
def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


def _option_name(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs == 0:
            return names
        metavar = action.metavar or action.dest.upper()
        if action.choices is not None and action.metavar is None:
            metavar = "{" + ",".join(map(str, action.choices)) + "}"
        many = " …" if action.nargs in ("+", "*") else ""
        return f"{names} `{metavar}{many}`"
    name = action.metavar or action.dest
    return f"`{name}`" + (" …" if action.nargs in ("+", "*") else "")


def _default(action: argparse.Action) -> str:
    if action.required or action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
        return "required" if action.required else ""
    if action.default == []:
        return ""
    return f"`{action.default}`"


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line, wrapped at 88 columns whatever the terminal's width."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"  # argparse's formatter reads the width from here
    try:
        return parser.format_usage().strip()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _command(parser: argparse.ArgumentParser, path: list[str], summary: str,
             lines: list[str]) -> None:
    level = "#" * min(len(path) + 1, 4)
    lines += [f"{level} lip {' '.join(path)}", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ".", ""]
    if parser.description:
        lines += [parser.description, ""]
    usage = _usage(parser)
    lines += ["```text", usage, "```", ""]
    subs = list(_subcommands(parser))
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS
                   and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        if not actions:
            continue
        title = {"positional arguments": "Arguments", "options": "Options"}.get(
            group.title or "", (group.title or "").capitalize())
        lines += [f"**{title}**", "", "| argument | default | meaning |", "|---|---|---|"]
        lines += [f"| {_cell(_option_name(a))} | {_cell(_default(a))} | "
                  f"{_cell(_help(parser, a))} |" for a in actions]
        lines.append("")
    if subs:
        lines += ["| command | what it does |", "|---|---|"]
        lines += [f"| [`lip {' '.join([*path, name])}`](#lip-{'-'.join([*path, name])}) | "
                  f"{_cell(helptext)} |" for name, helptext, _ in subs]
        lines.append("")
    for name, helptext, sub in subs:
        _command(sub, [*path, name], helptext, lines)


def _version() -> str:
    from lottery_prior import __version__

    return __version__


def cli_reference() -> str:
    """Every command of ``lip`` with its usage and every option, from the parsers."""
    from lottery_prior.cli import build_parser

    parser = build_parser()
    lines = ["# Command line", "",
             "Generated from the `lip` parsers (`lottery_prior.cli.build_parser`) when the "
             "site is built, so it lists exactly what `lip COMMAND --help` prints. Every "
             "command exits with status 2 and one line `lip: error: …` on bad input.", "",
             "| command | what it does |", "|---|---|"]
    for name, helptext, _ in _subcommands(parser):
        lines.append(f"| [`lip {name}`](#lip-{name}) | {_cell(helptext)} |")
    lines += ["", "Options of `lip` itself: `-h`, `--help` (this list; `lip COMMAND --help` for "
              "a command's) and `--version` (prints `lip " + _version() + "`).", ""]
    for name, helptext, sub in _subcommands(parser):
        _command(sub, [name], helptext, lines)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- spec reference
SECTION_TEXT = {
    "": ("Top level", "Keys outside any table."),
    "grid": ("[grid]", "What the sweep crosses: images × tasks × noise seeds × seeds, and "
             "for each search the methods × sparsities fitted."),
    "task": ("[[task]]", "One table per task (at least one). The keys a task takes are "
             "listed in the column *tasks*."),
    "model": ("[model]", "The network every search starts from."),
    "fit": ("[fit]", "Settings of every fit (`FitConfig`)."),
    "imp": ("[imp]", "Settings of every IMP search (`ImpConfig`); the rounds follow the "
            "largest sparsity of the grid and of the transfers."),
    "learned": ("[learned]", "Settings of the method `learned` (`LearnConfig`); the mask is "
                "learned at the counted sparsity of the IMP round it is compared with."),
    "transfer": ("[transfer]", "Masks retrained on other images or tasks."),
}


def spec_reference() -> str:
    """Every key of an experiment spec, from the validator's tables."""
    from lottery_prior.checks import MAX_GRID, MAX_ROUNDS, MAX_STEPS, MAX_UNITS
    from lottery_prior.experiments import spec

    lines = ["# Sweep spec", "",
             "An experiment spec is a TOML file read by `lip sweep SPEC` (and "
             "`lottery_prior.run_sweep`). This page is generated from the validator's own "
             "tables (`lottery_prior.experiments.spec.SECTIONS`): the same objects check "
             "every value, so what is written here is what is enforced. An unknown key or "
             "an impossible value is refused before any work, in one line naming its place "
             "(`grid.sparsities[1]: must be finite and in (0, 1), got 1.5`).", "",
             "Limits on the whole grid: at most "
             f"{MAX_UNITS:,} units (searches, fits and transfers), {MAX_ROUNDS} IMP rounds, "
             f"{MAX_STEPS:,} steps a fit, {MAX_GRID:,} images, seeds or sparsities, "
             f"{spec.MAX_TASKS} tasks. Every float must be finite; a float is refused where a "
             "whole number belongs.", ""]
    for section, keys in spec.SECTIONS.items():
        title, text = SECTION_TEXT[section]
        lines += [f"## {title}", "", text, ""]
        task = section == "task"
        head = "| key | type | default | bounds | " + ("tasks | " if task else "") + "meaning |"
        lines += [head, "|---|---|---|---|" + ("---|" if task else "") + "---|"]
        for name, key in keys.items():
            tasks = (f"{', '.join(key.tasks) or 'all'} | " if task else "")
            lines.append(f"| `{name}` | {_cell(key.type)} | {_cell(key.default_text)} | "
                         f"{_cell(key.bounds)} | {tasks}{_cell(key.doc)} |")
        lines.append("")
    example = (spec.__doc__ or "").split("Example::", 1)[-1]
    body = "\n".join(line[4:] for line in example.splitlines()).strip()
    lines += ["## Example", "", "From the validator's docstring:", "", "```toml", body, "```",
              ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- finders
def finders_reference() -> str:
    """The finder registry: every method a comparison, a sweep or a report knows."""
    from lottery_prior.finders import REGISTRY, finder_names

    lines = ["# Finders", "",
             "Every way of choosing the network a comparison fits is a *finder* in "
             "`lottery_prior.finders.REGISTRY` (this table is generated from it). "
             "`lip compare --methods`, the `methods` of a sweep spec and the report take "
             "these names. *structure*: the IMP tickets a finder is matched to; "
             "*transferable*: its ticket is a mask of the searched network, so it can be "
             "retrained on another image or task; *random*: its mask is a random draw "
             "(claims count the draws).", "",
             "| name | title | structure | transferable | random | `lip find --finder` | "
             "what it does |", "|---|---|---|---|---|---|---|"]
    for name in finder_names():
        cls = REGISTRY[name]
        if cls.classical:
            continue
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        lines.append(f"| `{name}` | {_cell(cls.title)} | {cls.structure} | "
                     f"{'yes' if cls.transferable else 'no'} | "
                     f"{'yes' if cls.random else 'no'} | "
                     f"{'`' + cls.search_name + '`' if cls.search_name else ''} | "
                     f"{_cell(doc)} |")
    lines += ["", "## Classical methods", "",
              "No network: each restores the observation once through its library and is "
              "scored with the same metric (`methods = [\"classical\"]` in a spec adds every "
              "one of the task; see [Compare with baselines]"
              "(../how-to/baselines.md#classical-methods)).", "",
              "| name | title | task | library | what it does |", "|---|---|---|---|---|"]
    for name in finder_names():
        cls = REGISTRY[name]
        if cls.classical:
            doc = (cls.__doc__ or "").strip().split("\n\n")[0]
            lines.append(f"| `{name}` | {_cell(cls.title)} | {cls.task} | {cls.library} | "
                         f"{_cell(doc)} |")
    lines += ["", "A new finder is one class: see "
              "[Concepts: the finders](../concepts.md#the-finders).", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- gallery
def examples() -> list[Path]:
    return sorted((DOCS / "examples").glob("*.py"))


def example_page(path: Path) -> str:
    """A gallery page: the script's docstring as text, then the script itself."""
    source = path.read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or path.stem
    title, _, text = doc.partition("\n")
    body = source
    if tree.body and isinstance(tree.body[0], ast.Expr):
        body = "\n".join(source.splitlines()[tree.body[0].end_lineno:]).lstrip("\n")
    return (f"# {title.strip()}\n\n{text.strip()}\n\n"
            f"Run it: `python docs/examples/{path.name}` "
            f"([download]({path.name})). The test suite runs it at a tiny size "
            f"(`LIP_EXAMPLE_TINY=1`).\n\n```python\n{body.rstrip()}\n```\n")


def gallery_index() -> str:
    lines = ["# Examples", "",
             "Runnable scripts, each a few seconds to a few minutes on a laptop CPU. Every "
             "one is run by the test suite (at a tiny size), so none of them can rot.", "",
             "| example | what it shows |", "|---|---|"]
    for path in examples():
        doc = (ast.get_docstring(ast.parse(path.read_text())) or path.stem).split("\n")
        lines.append(f"| [{_cell(doc[0])}]({path.stem}.md) | "
                     f"{_cell(' '.join(doc[1:]).strip().split('. ')[0])} |")
    return "\n".join(lines) + "\n"


def changelog() -> str:
    return (ROOT / "CHANGELOG.md").read_text()


GENERATED = {
    "reference/cli.md": cli_reference,
    "reference/spec.md": spec_reference,
    "reference/finders.md": finders_reference,
    "examples/index.md": gallery_index,
    "changelog.md": changelog,
}


def on_files(files, config):
    from mkdocs.structure.files import File

    for uri, make in GENERATED.items():
        files.append(File.generated(config, uri, content=make()))
    for path in examples():
        files.append(File.generated(config, f"examples/{path.stem}.md",
                                    content=example_page(path)))
    for png in sorted((ROOT / FIGURES).rglob("*.png")):
        files.append(File(str(png.relative_to(ROOT)), str(ROOT), config["site_dir"],
                          config["use_directory_urls"]))
    return files
