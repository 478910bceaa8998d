"""The report of a tiny-profile run, of a three-config tiny sweep and of what `t2ibench evaluate`
writes for each outside layout, loaded in a real headless browser (Debian's ``chromium``, which
``.ci/run`` installs): every image decodes, nothing is wider than the viewport, no console error,
and the file stays within its size budget."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t2ibench.analysis.images import REPORT_BUDGET_BYTES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIEWPORT = (1280, 900)

# Injected first in <head> of a copy of the report: records console errors and uncaught errors,
# then on load writes what the test checks into the DOM, which --dump-dom prints.
PROBE = """<script>
window.__errors = [];
const _err = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); _err(...a); };
window.addEventListener('error', e => window.__errors.push('error: ' + (e.message || e.target.src
  || e.target.outerHTML.slice(0, 80))), true);
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  const imgs = [...document.images];
  const wide = [...document.querySelectorAll('body *')]
    .filter(el => el.getBoundingClientRect().width > vw + 0.5)
    .map(el => el.tagName + ' ' + Math.round(el.getBoundingClientRect().width));
  const out = {viewport: vw, scrollWidth: document.documentElement.scrollWidth,
    images: imgs.length, undecoded: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => i.alt), wide: wide, errors: window.__errors};
  const pre = document.createElement('pre');
  pre.id = 't2i-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def probe(html_path, tmp_path) -> dict:
    text = html_path.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "--virtual-time-budget=10000",
           "--dump-dom", probed.as_uri()]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="t2i-probe">(.*?)</pre>', out.stdout, re.S)
    assert m, f"no probe output; chromium said: {out.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))  # fmt: skip


slow = pytest.mark.slow  # tiny-profile runs (train, generate, evaluate): ~1 min each

SWEEP_GRID = """
[grid]
name = "browser"
seeds = [23]
seed_labels = ["a"]
profile = "tiny"

[common]
epochs = 2
save_epochs = [1, 2]
generate.images_per_leaf = 1
generate.steps = 2
evaluate.encoders = ["dinov2-l@tiny", "clip-l14@tiny", "vgg19@tiny"]

[[config]]
name = "lora-dim4"
trainer = "lora"
dim = 4

[[config]]
name = "lora-dim8"
trainer = "lora"
dim = 8

[[config]]
name = "loha"
trainer = "loha"
"""


@pytest.fixture(scope="module")
def tiny_report(tiny_run):
    """The report of the session's tiny run (tests/conftest.py)."""
    return tiny_run[1] / "report" / "report.html"


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    from t2ibench.pipeline.sweep import load_grid, run_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "grid.toml").write_text(SWEEP_GRID)
    swept = run_sweep(load_grid(tmp / "grid.toml"), out=tmp / "out", progress=False)
    assert not swept.failed, swept.failed
    return swept.report / "report.html"


@slow
def test_report_sections_and_budget(tiny_report):
    html = tiny_report.read_text(encoding="utf-8")
    order = [html.index(f"<h2>{s}</h2>") for s in ("Checkpoints and recommendation", "Overview",
             "Raw values", "Copy detection", "Images")]  # fmt: skip
    assert order == sorted(order)
    assert "real images" in html and "Recommended checkpoint:" in html
    assert html.count("data:image/jpeg;base64,") >= 6  # grids and copy offenders
    assert "<h2>Algorithms" not in html  # one config: no Table-1 comparison
    assert tiny_report.stat().st_size <= REPORT_BUDGET_BYTES


@slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_report_in_headless_chromium(tiny_report, tmp_path):
    got = probe(tiny_report, tmp_path)
    assert got["images"] >= 6
    assert got["undecoded"] == [], got["undecoded"]
    assert got["wide"] == [] and got["scrollWidth"] <= got["viewport"], got["wide"]
    assert got["errors"] == [], got["errors"]


@slow
def test_sweep_report_has_anchors_cost_and_fits(sweep_report):
    html = sweep_report.read_text(encoding="utf-8")
    for title in ("Raw values", "Copy detection", "Images", "Cost", "Rank scores (many configs)"):
        assert f"<h2>{title}</h2>" in html, title
    assert "real images" in html and "No copy-detection table" not in html
    assert "lora-dim4 · e2" in html and "pareto_cost.png" in html  # grids per config, Pareto
    assert sweep_report.stat().st_size <= REPORT_BUDGET_BYTES


@slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_sweep_report_in_headless_chromium(sweep_report, tmp_path):
    got = probe(sweep_report, tmp_path)
    assert got["images"] >= 10
    assert got["undecoded"] == [], got["undecoded"]
    assert got["wide"] == [] and got["scrollWidth"] <= got["viewport"], got["wide"]
    assert got["errors"] == [], got["errors"]


@slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_probe_catches_a_broken_report(tiny_report, tmp_path):
    """The probe can fail: a broken image, an over-wide element and a script error are all seen
    (a table is no example: the report's CSS caps tables at the page width)."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        tiny_report.read_text(encoding="utf-8").replace(
            "</body>",
            "<img alt='bad' src='data:image/jpeg;base64,AAAA'>"
            "<div style='width:3000px'>x</div>"
            "<script>undefinedFunction()</script></body>",
        ),
        encoding="utf-8",
    )
    got = probe(broken, tmp_path)
    assert "bad" in got["undecoded"]
    assert any(w.startswith("DIV") for w in got["wide"])
    assert any("undefinedFunction" in e for e in got["errors"])


@slow
def test_anchors_recomputed(tiny_report):
    """The base rows, the leave-one-out ceiling and a nearest-training-image match, recomputed
    from the images with the same (deterministic tiny) encoder, without the feature cache."""
    import pandas as pd
    import torch
    from PIL import Image

    from t2ibench.data import load_dataset
    from t2ibench.encoders import create_encoder
    from t2ibench.results import read_results

    results = tiny_report.parents[1] / "results"
    df = read_results(results)
    base = df[df["checkpoint"] == "base"]
    assert not base.empty and set(base["epoch"]) == {0} and set(base["config"]) == {"base"}
    sources = json.loads((results / "anchors" / "sources.json").read_text())
    assert (results / "anchors" / "images.parquet").is_file()
    ds = load_dataset(sources["dataset"])
    enc = create_encoder("dinov2-l", tiny=True)

    def unit_feats(paths):
        with torch.no_grad():
            f = enc.encode_images([Image.open(p).convert("RGB") for p in paths])
        return torch.nn.functional.normalize(f.float(), dim=-1)

    ceiling = pd.read_parquet(results / "anchors" / "ceiling.parquet")
    key, leaf = next((k, v) for k, v in sorted(ds.leaves.items()) if len(v.images) >= 2)
    f = unit_feats([im.path for im in leaf.images])
    loo = [
        float(f[i] @ torch.cat([f[:i], f[i + 1 :]]).mean(0)) for i in range(len(leaf.images))
    ]  # image similarity = cosine against the mean of the others' unit features
    got = ceiling[(ceiling.leaf == key) & (ceiling.metric == "image_similarity")
                  & (ceiling.encoder == "dinov2-l")]["value"]  # fmt: skip
    assert got.iloc[0] == pytest.approx(sum(loo) / len(loo), abs=1e-4)

    copies = pd.read_parquet(results / "anchors" / "copies.parquet")
    row = copies[copies.checkpoint != "base"].iloc[0]
    train = [im.path for im in ds.images]
    sims = unit_feats([row["image"]]) @ unit_feats(train).T
    assert float(sims.max()) == pytest.approx(row["similarity"], abs=1e-4)
    assert str(train[int(sims.argmax())]) == row["nearest_image"]


# --- what `t2ibench evaluate` writes for the outside layouts, analysed (issue 22 item 1) ---------
sys.path.insert(0, str(Path(__file__).parents[1] / "layouts"))
from layout_testing import DREAMBOOTH_PROMPTS, evaluate_cli, noise  # noqa: E402


def dreambooth_tree(tmp: Path) -> list[str]:
    """tests/layouts/test_dreambooth.py's example tree; the `evaluate` arguments for it."""
    db, gen = tmp / "db", tmp / "gen"
    db.mkdir()
    (db / "prompts_and_classes.txt").write_text(DREAMBOOTH_PROMPTS)
    seed = 0
    for subject, names in {"dog": ["0_0", "1_0", "1_1"], "backpack": ["0_0", "1_0"]}.items():
        for k in range(2):
            noise(db / subject / f"{k:02d}.jpg", seed := seed + 1, (80, 60))
        for name in names:
            noise(gen / subject / f"{name}.png", seed := seed + 1)
    return [str(gen), "--layout", "dreambooth", "--dataset", str(db), "--metric-profile",
            "dreambooth", "--encoders", "dino-vits16@tiny,clip-b32@tiny"]  # fmt: skip


def customconcept101_tree(tmp: Path) -> list[str]:
    """tests/layouts/test_customconcept101.py's example tree."""
    bench, samples = tmp / "bench", tmp / "samples"
    prompts = {"pet_cat1": ["<new1> cat swimming in a pool", "a <new1> cat in times square"],
               "things_cup2": ["<new1> cup on a wooden table", "a watercolor of <new1> cup"]}  # fmt: skip
    seed = 0
    for concept, texts in prompts.items():
        for k in range(2):
            noise(bench / concept / f"{k:02d}.jpg", seed := seed + 1, (90, 70))
        for k in range(len(texts)):
            noise(samples / concept / "samples" / f"{k}.png", seed := seed + 1, (64, 64))
        (samples / concept / "prompts.json").write_text(json.dumps(dict(enumerate(texts))))
    return [str(samples), "--layout", "customconcept101", "--dataset", str(bench),
            "--metric-profile", "customconcept101", "--encoders",
            "dino-vits16@tiny,clip-b32@tiny"]  # fmt: skip


def dreambench_pp_tree(tmp: Path) -> list[str]:
    """tests/layouts/test_dreambench_pp.py's example tree."""
    method = tmp / "dreambooth_sd_gs7_5"
    instances = {"object_0_backpack": {"0_0": "a backpack on a mountain", "1_0": "a backpack"},
                 "live_subject_animal_1_dog": {"0_0": "a dog reading", "1_0": "a dog"}}  # fmt: skip
    seed = 0
    for inst, texts in instances.items():
        source = noise(tmp / "sources" / f"{inst}.jpg", seed := seed + 1, (80, 100))
        for stem, prompt in texts.items():
            for part in ("src_image", "tgt_image", "text"):
                (method / part / inst).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, method / "src_image" / inst / f"{stem}.jpg")
            noise(method / "tgt_image" / inst / f"{stem}.jpg", seed := seed + 1, (64, 64))
            (method / "text" / inst / f"{stem}.txt").write_text(prompt)
    (method / "negative_prompt.txt").write_text("")
    return [str(method), "--layout", "dreambench-pp", "--metric-profile", "dreambench-pp",
            "--encoders", "dino-vits8@tiny,dinov2-s@tiny,clip-b32@tiny"]  # fmt: skip


LAYOUT_TREES = {"dreambooth": dreambooth_tree, "customconcept101": customconcept101_tree,
                "dreambench-pp": dreambench_pp_tree}  # fmt: skip


@pytest.mark.parametrize("layout", sorted(LAYOUT_TREES))
def test_issue22_item01_evaluate_output_of_every_layout_analyzed_in_chromium(layout, tmp_path):
    """`t2ibench evaluate` writes no epochs for outside layouts; `analyze` crashed on them in the
    checkpoint line (NaN ticks). The full CLI path: evaluate → analyze (figures on) → a report
    whose every image decodes in chromium, with no console error."""
    from typer.testing import CliRunner

    from t2ibench.cli import app

    df = evaluate_cli(*LAYOUT_TREES[layout](tmp_path), "--out", str(tmp_path / "results"))
    assert df["epoch"].isna().all()
    got = CliRunner().invoke(app, ["analyze", str(tmp_path / "results"), "--out",
                                   str(tmp_path / "report")])  # fmt: skip
    assert got.exception is None, got.exception
    assert got.exit_code == 0, got.output
    report = tmp_path / "report" / "report.html"
    html = report.read_text(encoding="utf-8")
    assert "Recommended checkpoint:" in html and "checkpoint_line.png" in html
    if CHROMIUM is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    seen = probe(report, tmp_path)
    assert seen["images"] >= 1 and seen["undecoded"] == [], seen
    assert seen["errors"] == [] and seen["wide"] == [], seen
