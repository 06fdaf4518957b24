"""``write_report`` on a small fixture results table (made here, with tiny PNGs), and the page
in a real browser (headless Chromium: skipped when absent, a failure in CI)."""

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lottery_prior.errors import LipError
from lottery_prior.report.html import write_report

IMAGES = ("data:set5/baby", "data:set5/bird", "data:set5/head")
TASKS = {"denoise": {"sigma": 25.0}, "sr": {"factor": 4}}
SPARSITIES = (0.2, 0.5, 0.8, 0.95)
DENSE_PARAMETERS = 10_000


def _png(path: Path, seed: int, size: int = 12) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def make_results(folder: Path) -> list[dict]:
    """A sweep's results folder in miniature, with the columns ``lip sweep`` writes: 3 images
    × 2 tasks × 2 seeds × every method, transfers across images and tasks, PNGs for every
    output (a Deep Decoder row counts sparsity 0 and names its k in ``method_label``)."""
    rows = []
    counter = iter(range(10_000))

    def add(kind, method, image, task, seed, s, psnr, *, source_image=None, source_task=None,
            parameters=None, label=None):
        n = next(counter)
        problem = f"images/{image.split('/')[-1]}-{task}"
        output = f"fits/{n:04d}.png"
        _png(folder / output, n)
        settings = {"sigma": None, "mask": None, "keep": None, "factor": None, **TASKS[task]}
        search = f"imp-{image.split('/')[-1]}-{task}-{seed}"  # the comparison it belongs to
        source = f"imp-{(source_image or image).split('/')[-1]}-{source_task or task}-{seed}"
        rows.append({
            "unit": f"u{n}", "kind": kind, "image": image, "task": task, **settings,
            "size": 12, "noise_seed": 0, "model": "dip", "model_options": '{"width": 8}',
            "steps": 100, "lr": 0.01, "input_noise": 0.03, "precision": "bf16",
            "imp": json.dumps({"rate": 0.2}), "imp_run": source, "target_run": search,
            "seed": seed,
            "method": method, "method_label": label or method, "requested_sparsity": s,
            "sparsity": 0.0 if method == "decoder" else s and s + 0.001,
            "parameters": parameters or round(DENSE_PARAMETERS * (1 - s)),
            "source_image": source_image or image, "source_task": source_task or task,
            "psnr_final": psnr - 0.3, "psnr_averaged": psnr, "psnr_peak_iterate": psnr + 0.1,
            "psnr_peak_averaged": psnr + 0.2, "psnr_stopped": psnr - 0.1 if seed else None,
            "step_stopped": 80 if seed else None, "ssim_averaged": 0.8,
            "stop_fired": bool(seed) and task == "denoise",
            "stop_step": 80 if seed and task == "denoise" else None,
            "metric": "PSNR" if task == "denoise" else "PSNR-Y (border 4)",
            "seconds": 1.5, "machine": "test", "version": "0.2.0", "output": output,
            "observation": f"{problem}-observation.png", "clean": f"{problem}-clean.png"})

    for i, image in enumerate(IMAGES):
        for task in TASKS:
            problem = f"images/{image.split('/')[-1]}-{task}"
            _png(folder / f"{problem}-observation.png", 100 + i)
            _png(folder / f"{problem}-clean.png", 200 + i)
            for seed in (0, 1):
                base = 28 + i + 0.2 * seed
                add("fit", "dense", image, task, seed, 0.0, base)
                for s in SPARSITIES:
                    add("fit", "ticket", image, task, seed, s, base + 0.1 - 2 * max(0, s - 0.8))
                    add("fit", "learned", image, task, seed, s, base - 0.2 * s)
                    add("fit", "random", image, task, seed, s, base - 0.4 * s)
                    add("fit", "random-layerwise", image, task, seed, s, base - 0.3 * s)
                    add("fit", "snip", image, task, seed, s, base - 0.5 * s)
                for s in (0.8, 0.95):
                    add("fit", "decoder", image, task, seed, s, base - 1.0,
                        parameters=round(DENSE_PARAMETERS * (1 - s)) - 7,
                        label=f"decoder (k={16 if s == 0.8 else 6})")
                other = IMAGES[(i + 1) % len(IMAGES)]
                add("transfer", "ticket", image, task, seed, 0.8, base + 0.05,
                    source_image=other)
                add("transfer", "ticket", image, task, seed, 0.8, base - 0.5,
                    source_task="sr" if task == "denoise" else "denoise")
                add("transfer", "learned", image, task, seed, 0.8, base - 3.0,
                    source_image=other)  # not the ticket's: kept out of its heat map
    schema_rows = rows
    pq.write_table(pa.Table.from_pylist(schema_rows), folder / "results.parquet")
    with (folder / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    rows = make_results(folder)
    paths = write_report(folder, folder / "report")
    return folder, rows, paths


def test_report_writes_html_markdown_and_every_figure(report):
    folder, rows, paths = report
    html = paths["html"].read_text()
    md = paths["markdown"].read_text()
    figures = sorted(p.name for p in (folder / "report" / "figures").glob("*.png"))
    # Curves and image grids per image × task, one transfer heat map (one transfer sparsity).
    assert len([f for f in figures if f.startswith("curves-")]) == len(IMAGES) * len(TASKS)
    assert len([f for f in figures if f.startswith("images-")]) == len(IMAGES) * len(TASKS)
    assert len([f for f in figures if f.startswith("transfer-")]) == 1
    assert sorted(k.removeprefix("figure:") for k in paths if k.startswith("figure:")) == figures
    for name in figures:
        assert f"](figures/{name})" in md  # the Markdown twin links each file
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == len(figures)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    # Self-contained: no external resource anywhere (links, scripts, styles, fonts).
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "DATA", html)
    assert not re.search(r"(https?:|ftp:|//[a-z]|(src|href)=\"(?!DATA|#)|@import|url\()", text)
    for text in (html, md):
        for claim in ("ticket ≥ dense", "ticket &gt; Deep Decoder" if text is html
                      else "ticket > Deep Decoder", "random pruning (global)",
                      "layer-wise", "transfer across images", "transfer across tasks"):
            assert claim in text, claim
        assert "peak, averaged (oracle)" in text and "PSNR at the automatic stop" in text
        assert "holds" in text and "Per-method summary" in text and "Settings" in text
        assert "learned mask (at init)" in text  # a second finder's curve and summary


def test_report_claims_in_the_fixture(report):
    _, _, paths = report
    md = paths["markdown"].read_text()

    def claim_line(start, task="denoise"):
        first = md.split("### Claims on the PSNR, averaged output")[1].split("###")[0]
        return next(line for line in first.splitlines()
                    if line.startswith(f"| {start}") and f"| {task} |" in line)

    # Ticket +0.1 dB over dense up to 80%, −0.2 dB at 95%: S = 80%.
    assert "| 80% |" in claim_line("ticket ≥ dense")
    assert claim_line("ticket ≥ dense").endswith(claim_line("ticket ≥ dense").split("|")[-2]
                                                 + "|")
    assert "| holds |" in claim_line("ticket > random pruning (global)")
    assert "| contradicted |" not in claim_line("ticket > Deep Decoder")
    assert "| contradicted |" in claim_line("transfer across tasks")
    # learned masks transferred 3 dB worse are not the ticket's transfers
    assert "| contradicted |" not in claim_line("transfer across images")


def test_report_from_csv_matches_parquet(report, tmp_path):
    folder, _, _ = report
    paths = write_report(folder / "results.csv", tmp_path / "from-csv")
    md_csv = paths["markdown"].read_text()
    md_parquet = (folder / "report" / "report.md").read_text()
    assert md_csv == md_parquet


def test_report_refuses_bad_tables(tmp_path):
    with pytest.raises(LipError, match="no results.parquet or results.csv"):
        write_report(tmp_path, tmp_path / "out")
    with pytest.raises(LipError, match="not found"):
        write_report(tmp_path / "results.parquet", tmp_path / "out")
    (tmp_path / "results.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(LipError, match="not a readable Parquet file") as e:
        write_report(tmp_path, tmp_path / "out")
    assert "\n" not in str(e.value)
    (tmp_path / "results.parquet").unlink()
    (tmp_path / "results.csv").write_text("")
    with pytest.raises(LipError, match="empty"):
        write_report(tmp_path, tmp_path / "out")
    (tmp_path / "results.csv").write_text("image,task\n")
    with pytest.raises(LipError, match="no rows"):
        write_report(tmp_path, tmp_path / "out")
    (tmp_path / "results.csv").write_text("image,task\ndata:set5/baby,denoise\n")
    with pytest.raises(LipError, match="missing column.*method"):
        write_report(tmp_path, tmp_path / "out")
    pq.write_table(pa.table({"image": ["a"]}), tmp_path / "results.parquet")
    with pytest.raises(LipError, match="missing column"):
        write_report(tmp_path, tmp_path / "out")


# --- a real browser -------------------------------------------------------------------------

CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push('error: ' + e.message), true);
document.addEventListener('securitypolicyviolation',
  e => window.__errors.push('csp: ' + e.blockedURI));
['error', 'warn'].forEach(level => { const original = console[level];
  console[level] = (...a) => { window.__errors.push(level + ': ' + a.join(' '));
                               original.apply(console, a); }; });
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const shown = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = 'CHECK images=' + images.length + ' shown=' + shown +
                   ' errors=' + window.__errors.length + ' ' + window.__errors.join(' | ');
});
</script>"""


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("CI"):
        pytest.fail("CI is set but chromium is not installed (apt-get install chromium)",
                    pytrace=False)
    if found is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def _run_chromium(binary: str, url: str, *extra: str, home: Path) -> subprocess.CompletedProcess:
    command = [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
               "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
               f"--user-data-dir={home / 'profile'}", "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=10000", *extra, url]
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_report_in_headless_chromium(report, tmp_path):
    binary = _chromium()
    _, _, paths = report
    html = paths["html"].read_text()
    # A copy with a checking script: the page's own policy allows no script, so the copy
    # lets inline scripts run and keeps everything else (images from data: only).
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    assert policy in html
    probe = html.replace(policy, policy + "; script-src 'unsafe-inline'").replace(
        "<head>", "<head>\n" + CHECK_SCRIPT, 1)
    page = paths["html"].with_name("report.check.html")
    page.write_text(probe)
    try:
        done = _run_chromium(binary, page.as_uri(), "--dump-dom", home=tmp_path)
    finally:
        page.unlink()
    title = re.search(r"<title>(CHECK[^<]*)</title>", done.stdout)
    assert title, f"the page did not load: {done.stderr[-2000:]}"
    n = len(re.findall(r"<img ", html))
    assert title.group(1).startswith(f"CHECK images={n} shown={n} errors=0"), title.group(1)
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    # The page itself, as a reader sees it: a screenshot that is not blank.
    shot = tmp_path / "report.png"
    done = _run_chromium(binary, paths["html"].as_uri(), f"--screenshot={shot}",
                         "--window-size=1280,2400", home=tmp_path)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # text, tables and figures, not an empty page
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    if os.environ.get("LIP_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["LIP_KEEP_SCREENSHOT"])


def test_report_from_a_minimal_table(tmp_path):
    """Only the required columns, two fits, no images: every section still renders."""
    rows = [{"kind": "fit", "image": "builtin:astronaut", "task": "denoise", "method": m,
             "requested_sparsity": s, "sparsity": s, "parameters": None, "seed": 0,
             "noise_seed": 0, "psnr_averaged": p}
            for m, s, p in (("dense", 0.0, 25.0), ("ticket", 0.5, 25.2), ("decoder", 0.5, 24.0))]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "results.parquet")
    paths = write_report(tmp_path / "results.parquet", tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "lacks imp_run" in md and "No transfer fits" in md
    # no image files: one sentence, no grid of "image missing" boxes
    assert not any(k.startswith("figure:images-") for k in paths)
    assert "the image grids are left out" in md


def test_report_starts_with_the_verdicts_and_one_figure(report):
    """What a reader wants first: the claims' verdicts at a glance and one figure, before
    the settings and the details."""
    _, _, paths = report
    html = paths["html"].read_text()
    sections = re.findall(r'<section id="([^"]+)">', html)
    assert sections[0] == "glance" and sections.index("settings") > 0
    glance = html.split('<section id="glance">')[1].split("</section>")[0]
    assert len(re.findall(r"<img ", glance)) == 1  # one figure: a PSNR-vs-sparsity curve
    assert 'alt="baby' in glance
    verdicts = re.findall(r'<td class="verdict-[^"]*">([^<]+)</td>', glance)
    claims = {c for c in re.findall(r"<tr><td[^>]*>([^<]+)</td>", glance)}
    assert len(claims) == 6 and "holds" in verdicts  # every claim of the paper, per task
    assert len(verdicts) == len(re.findall(r"<tr><td", glance))
    assert "units · images" not in glance  # the counts are in the details
    md = paths["markdown"].read_text()
    assert md.index("## At a glance") < md.index("## Settings") < md.index(
        "## Claims of the paper")
    # the first curve is not drawn twice: the curves section points to it
    assert len(re.findall(r"curves-data-set5-baby-denoise", md)) == 1
    assert "is at the top" in md


def test_a_report_without_its_images_omits_the_grids_in_one_sentence(report, tmp_path):
    """A report remade from a committed table (whose fit images are not in the repository)
    says so once instead of drawing boxes that say "image missing"."""
    folder, _, _ = report
    table = tmp_path / "results.csv"
    shutil.copy(folder / "results.csv", table)  # the table alone, as committed
    paths = write_report(table, tmp_path / "report")
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    assert not any(k.startswith("figure:images-") for k in paths)
    assert not list((tmp_path / "report" / "figures").glob("images-*"))
    images = md.split("## Images")[1]
    assert images.count("left out") == 1 and "![" not in images
    assert "image missing" not in html + md
    assert any(k.startswith("figure:curves-") for k in paths)  # the rest is all there
    # one grid's images missing: that grid alone is left out, and named
    (folder / "images" / "head-sr-clean.png").rename(tmp_path / "away.png")
    try:
        paths = write_report(folder, tmp_path / "partial")
    finally:
        (tmp_path / "away.png").rename(folder / "images" / "head-sr-clean.png")
    grids = [k for k in paths if k.startswith("figure:images-")]
    assert len(grids) == len(IMAGES) * len(TASKS) - 1
    assert "Left out for want of their images: head · sr" in paths["markdown"].read_text()


def test_decoder_k_from_the_label_or_options():
    from lottery_prior.report.rows import decoder_k

    assert decoder_k({"method_label": "decoder (k=91)", "model_options": '{"width": 32}'}) == 91
    assert decoder_k({"model_options": '{"k": 64}'}) == 64
    assert decoder_k({"model_options": "not json"}) is None
