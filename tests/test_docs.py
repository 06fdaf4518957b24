"""The documentation cannot rot: the site builds with --strict, every Python code block and
every gallery example runs, every `lip` command line in the docs parses, the generated
references list everything the code has, and the built site works in headless Chromium
(every page loads without console errors, its images show, the search box finds pages)."""

import doctest
import functools
import http.server
import importlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.M | re.S)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_MKDOCS_2_WARNING": "1"}


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as `make docs` builds it, with --strict (a broken link, a missing page
    or a failing API reference is an error)."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=ROOT, capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_site_builds_strict_with_every_page(site):
    for page in ["index", "getting-started", "concepts", "reference/cli", "reference/spec",
                 "reference/finders", "reference/files", "reference/api", "changelog",
                 "examples/index", "results/paper-claims"]:
        assert (site / f"{page}.html").is_file(), page
    for md in PAGES:
        assert (site / md.relative_to(DOCS).with_suffix(".html")).is_file(), md
    api = (site / "reference/api.html").read_text()
    import lottery_prior

    for name in lottery_prior.__all__:
        if name != "__version__":
            assert f'id="lottery_prior.{name}"' in api, f"{name} missing from the API page"
    # the committed figures are served from benchmarks/results, not copied into docs/
    assert (site / "benchmarks/results/structured/psnr_vs_ms.png").is_file()
    assert not list(DOCS.rglob("benchmarks"))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")] + [ROOT / "README.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path):
    """Every Python block of a page, in order, in one fresh interpreter (a page's blocks
    build on each other), in an empty folder."""
    code = "\n\n".join(blocks(page, "python"))
    if not code:
        pytest.skip("no Python blocks")
    script = tmp_path / "page.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert done.returncode == 0, f"{page}:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("example", sorted((DOCS / "examples").glob("*.py")),
                         ids=lambda p: p.name)
def test_gallery_examples_run(example, tmp_path):
    env = {**ENV, "LIP_EXAMPLE_TINY": "1", "LIP_EXAMPLE_OUT": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()


def lip_lines() -> list[tuple[str, str]]:
    lines = []
    for page in [*PAGES, ROOT / "README.md"]:
        for body in blocks(page, "bash"):
            for line in body.splitlines():
                line = line.strip()
                if line.startswith("lip "):
                    lines.append((page.name, line))
    return lines


@pytest.mark.parametrize("where,line", lip_lines())
def test_lip_command_lines_parse(where, line):
    """Every `lip …` line in a bash block of the docs parses with today's parser."""
    from lottery_prior.cli import build_parser

    args = shlex.split(line, comments=True)[1:]
    if "--help" in args or "--version" in args:
        return
    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: `{line}` does not parse")


def test_every_page_with_commands_is_checked():
    assert len(lip_lines()) >= 40


def test_cli_reference_lists_every_command_and_option():
    import argparse

    from lottery_prior.cli import build_parser

    text = hooks().cli_reference()

    def walk(parser, path):
        assert f"lip {' '.join(path)}".strip() in text or not path
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in text, f"lip {' '.join(path)} {option}"
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])

    walk(build_parser(), [])
    for command in ("lip gan cs", "lip classify compare", "lip sweep", "lip demo"):
        assert f"## {command}" in text or f"### {command}" in text


def test_spec_reference_is_the_validator_schema():
    from lottery_prior.experiments import spec

    text = hooks().spec_reference()
    for keys in spec.SECTIONS.values():
        for name, key in keys.items():
            assert re.search(rf"^\| `{name}` \| {re.escape(key.type)} \|", text, re.M), name
    # every key the validator accepts is in the schema, and nothing else is accepted
    with pytest.raises(Exception, match="unknown key"):
        spec.parse_spec({"grid": {"images": ["builtin:astronaut"], "sparsities": [0.5],
                                  "methods": ["ticket"], "colour": 1},
                         "task": [{"name": "denoise"}]})
    assert spec.TASK_KEYS == {"denoise": {"sigma", "images"},
                              "inpaint": {"mask", "keep", "images"},
                              "sr": {"factor", "images"}}


def test_spec_reference_example_is_a_valid_spec(shared_data):
    import tomllib

    from lottery_prior.experiments.spec import parse_spec

    text = hooks().spec_reference()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = parse_spec(tomllib.loads(example))
    assert spec.name == "denoise-small" and len(spec.tasks) == 2


def test_finders_reference_lists_the_registry():
    from lottery_prior.finders import REGISTRY

    text = hooks().finders_reference()
    for name, cls in REGISTRY.items():
        assert f"| `{name}` | {cls.title.replace('|', chr(92) + '|')} |" in text


def test_results_columns_are_documented(tmp_path):
    """Every column of a sweep's results table is in the file-format reference."""
    from lottery_prior.experiments.executor import run_local
    from lottery_prior.experiments.spec import parse_spec
    from lottery_prior.experiments.store import Store
    from lottery_prior.experiments.units import expand
    from lottery_prior.report.rows import read_results

    data = {"grid": {"images": ["builtin:astronaut"], "size": 32, "sparsities": [0.2],
                     "methods": ["ticket", "dense"]},
            "task": [{"name": "denoise"}], "model": {"options": {"width": 8, "scales": 2}},
            "fit": {"steps": 3, "stop": "wmv"}}
    plan = expand(parse_spec(data), tmp_path)
    run_local(plan, Store(tmp_path), workers=0, show=False)
    columns = read_results(tmp_path)[0].keys()
    files = (DOCS / "reference/files.md").read_text()
    missing = [c for c in columns if f"`{c}`" not in files]
    assert not missing, f"columns not documented in reference/files.md: {missing}"
    committed = (ROOT / "benchmarks/results/paper_small/denoise/results.csv").read_text()
    missing = [c for c in committed.splitlines()[0].split(",") if f"`{c}`" not in files]
    assert not missing, missing


@pytest.mark.parametrize("module", ["lottery_prior.api", "lottery_prior.fit",
                                    "lottery_prior.stopping", "lottery_prior.checks"])
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    """The examples in the public API's docstrings (shown on the API page) run."""
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_readme_is_a_landing_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "make demo" in text and "make test" in text and "![" in text
    for target in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (ROOT / target).exists(), target


# ------------------------------------------------------------------ headless Chromium
def _chromium() -> str:
    found = next((p for p in ("/usr/lib/chromium/chromium",) if Path(p).is_file()), None)
    found = found or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is not installed (apt-get install chromium)",
                        pytrace=False)
        pytest.skip("chromium not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but playwright is not installed (the dev extra)")
        pytest.skip("playwright not installed (pip install -e '.[dev]')")
    return found


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def handle(self):  # a browser closing a connection early is not an error here
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def served(site):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_site_in_headless_chromium(site, served, tmp_path):
    binary = _chromium()
    from playwright.sync_api import sync_playwright

    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                   if p.name != "404.html")
    assert len(pages) >= 30
    outside, problems = [], []
    shots = os.environ.get("LIP_DOCS_SCREENSHOTS")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def route(r):  # nothing may leave this machine: record it and refuse it
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                return r.continue_()
            outside.append(r.request.url)
            return r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(
            f"{page.url}: console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
        # a missing file is a 4xx answer; a request cut short by the next page's load is not
        page.on("response", lambda r: r.status >= 400 and problems.append(
            f"{page.url}: {r.status} {r.url}"))
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                and problems.append(f"{page.url}: failed {r.url} ({r.failure})"))
        for name in pages:
            response = page.goto(f"{served}/{name}", wait_until="load")
            assert response is not None and response.ok, name
            broken = page.evaluate(
                "() => Array.from(document.images).filter(i => !(i.complete && "
                "i.naturalWidth > 0)).map(i => i.src)")
            assert not broken, f"{name}: images not shown: {broken}"
        # the search box finds pages
        page.goto(f"{served}/index.html", wait_until="load")
        page.locator("label.md-search__icon, .md-search__input").first.click()
        page.locator("input.md-search__input").press_sequentially("rewinding", delay=30)
        page.wait_for_selector(".md-search-result__item", timeout=30000)
        meta = page.locator(".md-search-result__meta").inner_text()
        assert re.match(r"\d+ matching documents?", meta), meta
        assert page.locator(".md-search-result__item a[href*='concepts.html']").count()
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{shots}/search.png")
            for name, file in (("results/paper-claims.html", "results.png"),
                               ("reference/api.html", "api.png"),
                               ("index.html", "home.png")):
                page.goto(f"{served}/{name}", wait_until="load")
                page.screenshot(path=f"{shots}/{file}")
        browser.close()
    assert not problems, problems[:10]
    assert not outside, f"the site asked the network for {outside[:5]}"
