"""The report in a real browser: headless Chromium (tests/report/browser.py) loads a report with every section, in the
interactive and the static mode, with no JavaScript error and every figure rendered (a Plotly plot with traces and
its SVG layers in the DOM, or a loaded image). Skipped with its reason where no Chromium is installed (.ci/run
installs Debian's ``chromium``)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from lor2c_probe.cli import app
from tests.report.browser import Browser, find_chromium

runner = CliRunner()

try:
    find_chromium()
except FileNotFoundError as e:
    pytest.skip(str(e), allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with Browser(timeout=90) as b:
        yield b


@pytest.fixture(scope="module", params=["interactive", "static"])
def report(request, recorded, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / request.param
    runs = [str(recorded[k]) for k in ("lor2c", "lora", "im-lor2c", "full")]
    res = runner.invoke(app, ["report", *runs, "--out", str(out), *(["--static"] if request.param == "static" else [])])
    assert res.exit_code == 0, res.output
    return request.param, out / "report.html"


def test_report_renders_without_errors(browser, report):
    mode, html_path = report
    html = html_path.read_text()
    errors, facts = browser.load(html_path, settle_ms=1500)
    assert errors == []
    assert facts["images_broken"] == [] and facts["inline_svgs_empty"] == 0
    figures = len(re.findall(r"<figure\b", html))
    assert figures >= 8
    if mode == "interactive":
        assert facts["plotly_loaded"] and facts["plotly_divs_without_plot"] == []
        assert facts["plotly_plots"] == html.count("Plotly.newPlot") >= 4
        assert facts["plotly_unrendered"] == []  # each plot has traces and its SVG layers
        assert all(p["main_svgs"] > 0 and p["traces"] > 0 for p in facts["plotly"])
        assert facts["plotly_plots"] + len(facts["images"]) + len(facts["inline_svgs"]) >= figures
    else:
        assert not facts["plotly_loaded"] and facts["plotly_plots"] == 0
        assert len(facts["images"]) + len(facts["inline_svgs"]) >= figures
        assert all(i["naturalWidth"] > 0 for i in facts["images"])


def test_the_browser_check_catches_errors(browser, tmp_path):
    """The check itself can fail: a console error, an uncaught exception and a figure that never rendered."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><div class='plotly-graph-div' id='p'></div><img src='missing.png'>"
                    "<script>console.error('boom'); undefinedFn();</script></body></html>")
    errors, facts = browser.load(page)
    text = " | ".join(errors)
    assert "console.error: boom" in text and "undefinedFn" in text
    assert facts["plotly_divs_without_plot"] == ["p"] and facts["images_broken"] == ["missing.png"]
