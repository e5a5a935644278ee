"""The report (`snakemake --report report.html`) in a real browser, and its captions.

Snakemake 9's self-contained HTML report is a React app: the results, base64 data URIs with their
rendered captions, are a JSON blob in <script id="results">, the categories another. The browser
test builds the report of the session's finished tiny run, opens it in headless Chromium (over
the DevTools protocol, --remote-debugging-pipe) and clicks through it with tests/report_driver.js;
it checks that every category is in the menu, every result is in its category's table, every
figure decodes in the page with the size of its PNG, every table's link holds the CSV of the run,
and that no view shows a docutils system message. Skipped, saying why, where Chromium is missing
(.ci/run installs Debian's `chromium`). The caption test renders every workflow/report/*.rst the
way Snakemake does (Jinja, then docutils) and fails on any docutils message; it needs no run.
"""

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml
from docutils.core import publish_parts
from docutils.writers import get_writer_class
from jinja2 import Environment, StrictUndefined
from PIL import Image

from helpers import REPO, config_path, snakemake

CAPTIONS = sorted((REPO / "workflow" / "report").glob("*.rst"))
# What docutils writes into the HTML of a caption it could not parse (a system_message node) and
# the text of such a message; the report shows it as it is.
DOCUTILS_MESSAGE = re.compile(r'class="system-message"|class="problematic"|System Message|'
                              r"(?:DEBUG/0|INFO/1|WARNING/2|ERROR/3|SEVERE/4)|Undefined substitution")
# Snakemake appends these link targets to every caption before rendering it (snakemake.report).
RST_LINKS = "\n\n.. _Workflow: javascript:show_panel('workflow')\n.. _Statistics: javascript:show_panel('statistics')\n"


class CaptionContext:
    """The `snakemake` object of a caption's Jinja template, as the report gives it: the
    default config; no job (a caption that reads wildcards or params fails here: extend this)."""

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def render_caption(text: str) -> tuple[str, str]:
    """``text`` (a caption: Jinja, then reStructuredText) rendered as Snakemake's report does;
    the HTML body and the messages docutils reported."""
    source = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined).from_string(
        text + RST_LINKS).render(snakemake=CaptionContext, categories={}, files=[])
    stream = io.StringIO()
    parts = publish_parts(source, writer=get_writer_class("html")(), settings_overrides={"warning_stream": stream})
    body = parts["body"]
    return body, stream.getvalue()


@pytest.mark.parametrize("caption", CAPTIONS, ids=[path.name for path in CAPTIONS])
def test_caption_renders_without_a_docutils_message(caption):
    body, messages = render_caption(caption.read_text())
    assert not messages, f"{caption.relative_to(REPO)}: {messages}"
    assert not DOCUTILS_MESSAGE.search(body), f"{caption.relative_to(REPO)}: {body}"
    assert body.strip()


def test_caption_check_catches_a_substitution_and_a_jinja_slip():
    # issue 15: K_F's |y_j - y_k| read as a substitution reference
    body, messages = render_caption("K_F = max |y_j - y_k| / ||x_j - x_k||.\n")
    assert 'Undefined substitution referenced: "y_j - y_k"' in messages and DOCUTILS_MESSAGE.search(body)
    body, messages = render_caption("K_F = ``max |y_j - y_k| / ||x_j - x_k||``.\n")
    assert not messages and not DOCUTILS_MESSAGE.search(body) and "|y_j - y_k|" in body
    with pytest.raises(Exception, match="datsets"):
        render_caption('{{ snakemake.config["datsets"] | length }} datasets\n')


# ------------------------------------------------------------------------------- the browser

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it): "
                "the report cannot be checked in a browser here")


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    the browser reads commands on its fd 3 and answers on fd 4, JSON messages ended by NUL)."""

    def __init__(self, binary: str, profile: Path):
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()

        def browser_fds():  # in the child, before exec: the two pipe ends at fds 3 and 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=browser_fds, pass_fds=(3, 4))
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.events = b"", 0, []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._answers, 1 << 20) if ready else b""
            if not chunk:
                stderr = self.process.stderr.read1().decode(errors="replace") if self.process.poll() is not None else ""
                raise AssertionError(f"Chromium did not answer in time (exit code {self.process.poll()}): {stderr}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, timeout: float = 60, session: str | None = None, **params) -> dict:
        self._id += 1
        command = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == self._id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = [event for event in self.events if event.get("method") == method]
            if found:
                self.events.remove(found[0])
                return found[0]
            self.events.append(self._read(deadline))

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._answers)
        self.process.stderr.close()


def read_in_browser(binary: str, report: Path, profile: Path) -> tuple[dict, list[str]]:
    """What tests/report_driver.js saw in ``report``, and the page's uncaught errors."""
    browser = DevTools(binary, profile)
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.send("Page.enable", session=session)
        browser.send("Runtime.enable", session=session)
        browser.send("Page.navigate", session=session, url=report.as_uri())
        browser.wait_for("Page.loadEventFired")
        answer = browser.send("Runtime.evaluate", timeout=180, session=session, awaitPromise=True, returnByValue=True,
                              expression=(REPO / "tests" / "report_driver.js").read_text())
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        errors = [json.dumps(event["params"]["exceptionDetails"])[:2000] for event in browser.events
                  if event.get("method") == "Runtime.exceptionThrown"]
        return json.loads(answer["result"]["value"]), errors
    finally:
        browser.close()


def report_blob(page: str, name: str):
    """The JSON of <script id="{name}"> (var x = {...};) in the report's HTML."""
    found = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\s*</script>', page, re.S)
    assert found, f'the report has no <script id="{name}"> data: has Snakemake\'s report format changed?'
    return json.loads(found.group(1))


def decoded(data_uri: str) -> bytes:
    header, _, data = data_uri.partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header[:100]
    return base64.b64decode(data, validate=True)


class Text(HTMLParser):
    def __init__(self, markup: str):
        super().__init__()
        self.parts = []
        self.feed(markup)

    def handle_data(self, data):
        self.parts.append(data)

    def text(self) -> str:
        return " ".join("".join(self.parts).split())


@pytest.fixture(scope="module")
def html_report(repo, tiny_run) -> Path:
    report = tiny_run / "report.html"
    snakemake(repo, tiny_run, "--configfile", str(config_path("tiny")), "--report", str(report))
    return report


def test_report_loads_every_figure_and_table_in_a_browser(html_report, tiny_run, tmp_path):
    binary = chromium()
    page = html_report.read_text()
    results, categories = report_blob(page, "results"), report_blob(page, "categories")
    # the tiny run's categories and figures (others may come: each is checked below)
    assert {"Dataset properties", "Tables", "Scaling laws", "Robustness", "Generalization", "Representations",
            "Sensitivity"} <= set(categories)
    for figure in ("fig1_dataset_properties", "fig2_generalization_loss", "fig3_sharpness_robustness",
                   "fig4_repr_generalization_loss", "fig5_repr_vs_data"):
        assert f"results/figures/{figure}.png" in results, figure
    assert sorted(p for paths in (s for c in categories.values() for s in c.values()) for p in paths) == sorted(results)

    seen, errors = read_in_browser(binary, html_report, tmp_path / "chromium")
    assert not seen["problems"] and not errors, (seen["problems"], errors)
    assert not seen["messages"], seen["messages"]
    assert "Konz & Mazurowski" in seen["start"] and "3 datasets" in seen["start"]  # workflow.rst, rendered
    for category, shown in seen["categories"].items():
        assert shown["in_menu"], f"category {category} is not in the report's menu"
        assert sorted(shown["rows"]) == sorted(p for paths in categories[category].values() for p in paths), category
    assert sorted(seen["results"]) == sorted(results)
    for path, entry in results.items():
        data, record = decoded(entry["data_uri"]), seen["results"][path]
        assert data == (tiny_run / path).read_bytes(), f"{path}: the embedded data is not the run's file"
        mime = entry["mime_type"]
        if mime == "image/png":
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
                size = image.size
            assert record["image"] == {"width": size[0], "height": size[1]}, (path, record)
        elif mime in ("text/csv", "text/markdown", "text/plain", "text/html"):
            link = record["link"]
            assert link["is_data"] and link["ok"] and link["type"].startswith(mime), (path, link["type"])
            assert link["text"] == data.decode("utf-8"), path
            if mime == "text/csv":
                table = pd.read_csv(io.StringIO(link["text"]))
                assert len(table) and table.equals(pd.read_csv(tiny_run / path)), path
            else:
                assert link["text"].strip(), path
        else:
            raise AssertionError(f"{path}: no check for a {mime} result in this test: add one")
        # the caption, as docutils rendered it, is what the page shows
        assert entry["caption"].strip(), f"{path} has no caption"
        assert not DOCUTILS_MESSAGE.search(entry["caption"]), (path, entry["caption"])
        assert " ".join(record["caption"].split()) == Text(entry["caption"]).text(), path
