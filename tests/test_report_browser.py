"""The report page in a real headless browser (Debian's ``chromium``; ``.ci/run`` installs it): every
table and figure is laid out with a size, visible, every image decoded, and a screenshot of the
page is not blank (one browser run: the page with the check script appended, its DOM and its
screenshot). Skipped, with the reason, where no browser is installed."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from test_report import FIGURE_IDS, TABLE_IDS, toy, toy_report  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# appended to a copy of the page only (the report itself has no script): after load, every table and
# figure image with its box, computed visibility and display, and an image's decoded width
CHECK = """<script>
addEventListener("load", () => {
  const found = [...document.querySelectorAll("table, figure img")].map(el => {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    return {tag: el.tagName.toLowerCase(), id: el.id || el.closest("figure").id, width: box.width, height: box.height,
            visibility: style.visibility, display: style.display, natural: el.naturalWidth ?? null};
  });
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});
</script>"""


def browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip("no headless chromium installed (Debian: apt-get install chromium); .ci/run installs it")
    return found


def headless(exe: str, profile, *args) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                           "--window-size=1280,2000", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_every_table_and_figure_is_laid_out_and_visible(toy_report, tmp_path):  # noqa: F811
    exe = browser()
    page, _, _ = toy_report
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK + "</body>"))
    shot = tmp_path / "shot.png"
    dump = headless(exe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", f"--screenshot={shot}", probe.as_uri())
    found = re.search(r'<pre id="check">(.*?)</pre>', dump.stdout, re.S)
    assert found, f"no check output in the DOM (rc {dump.returncode}): {dump.stderr[-2000:]}"
    elements = {e["id"]: e for e in json.loads(html.unescape(found.group(1)))}
    assert sorted(elements) == sorted(["claims"] + [t for t in TABLE_IDS if t != "table-toy-ran-extra"] + FIGURE_IDS)
    for e in elements.values():
        assert e["width"] > 0 and e["height"] > 0, e
        assert e["visibility"] == "visible" and e["display"] != "none", e
    for fig in FIGURE_IDS:
        assert elements[fig]["tag"] == "img" and elements[fig]["natural"] > 0, elements[fig]

    assert shot.is_file(), f"no screenshot (rc {dump.returncode}): {dump.stderr[-2000:]}"
    lo, hi = Image.open(shot).convert("L").getextrema()
    assert hi - lo > 100, "the screenshot is blank"
