"""The spec's HTML page in a real browser: headless Chromium (Debian's package; .ci/run installs
it) opens the committed page and the shop spec's, logs no console message (the page's own
Content-Security-Policy makes any load or script attempt one), and the rendered DOM holds every
message and consumer, with every link landing; a screenshot is taken."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from generator.docs import DOCS_PATH, anchor, render_docs
from tests.support.specs import REPO, spec_under_test
from tests.unit.test_docs import Page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium); CI installs it",
)


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium is not installed: .ci/run installs it"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", ["filetrash", "shop"])
def test_the_page_renders_in_chromium_with_its_links(name: str, tmp_path: Path) -> None:
    doc = spec_under_test(name).doc
    if name == "filetrash":
        page = REPO / DOCS_PATH
    else:
        page = tmp_path / "spec.html"
        page.write_text(render_docs(doc), encoding="utf-8")
    result = chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    dom = Page(result.stdout)
    text = " ".join(dom.text)
    for message in doc.messages:
        assert anchor("message", message.key) in dom.ids
        assert message.key in text
    for op in doc.receivers:
        assert op.consumer is not None and op.consumer.durable in text
    for href in dom.links:
        assert href.startswith("#") and href[1:] in dom.ids, href
    shot = tmp_path / "spec.png"
    result = chromium(
        page, tmp_path / "profile2", "--window-size=1200,1600", f"--screenshot={shot}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
