"""The spec's HTML page (`just docs`), read as a browser would read its markup: every message,
channel, operation, stream and role has its section, every link lands, settings are in human
units, nothing is loaded from anywhere, and no string from the spec becomes markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from generator.build import build
from generator.docs import DOCS_PATH, anchor, duration, render_docs, size
from generator.load import load_text
from tests.support.specs import REPO, SPECS, spec_under_test


class Page(HTMLParser):
    """The tags, ids, links and text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if found.get("id"):
            self.ids.add(str(found["id"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def links(self) -> list[str]:
        return [str(a["href"]) for tag, a in self.tags if tag == "a" and a.get("href")]


@pytest.mark.parametrize("name", list(SPECS))
def test_every_part_of_the_spec_has_a_section_and_every_link_lands(name: str) -> None:
    doc = spec_under_test(name).doc
    page = Page(render_docs(doc))
    expected = (
        {anchor("message", m.key) for m in doc.messages}
        | {anchor("channel", c.key) for c in doc.channels}
        | {anchor("operation", op.key) for op in doc.operations}
        | {anchor("stream", s.name) for s in doc.streams}
        | {anchor("role", r.name) for r in doc.roles}
    )
    assert expected <= page.ids
    assert page.links, "no links"
    for href in page.links:
        assert href.startswith("#") and href[1:] in page.ids, href
    text = " ".join(page.text)
    for op in doc.receivers:
        assert op.consumer is not None
        assert op.consumer.durable in text and op.consumer.filter_subject in text
    for message in doc.messages:
        for example_name, _ in message.examples:
            assert example_name in text
    for role in doc.roles:  # every grant of every role, with its reason
        for subject in role.publish:
            assert f"publish {subject}" in text, (role.name, subject)
        for subject in role.subscribe:
            assert f"subscribe {subject}" in text, (role.name, subject)
        for _, why in role.reasons:
            assert why in text, (role.name, why)


def test_settings_are_in_human_units() -> None:
    text = " ".join(Page(render_docs(spec_under_test("filetrash").doc)).text)
    assert "30 s" in text and "7 days" in text and "100 MiB" in text and "2 min" in text
    assert "604800" not in text and "104857600" not in text
    assert (duration(30), duration(120), duration(86400 * 1.5), size(1 << 20)) == (
        "30 s",
        "2 min",
        "1 day 12 h",
        "1 MiB",
    )


def test_the_page_loads_nothing_and_runs_nothing() -> None:
    html = render_docs(spec_under_test("shop").doc)
    page = Page(html)
    assert not [t for t, _ in page.tags if t in ("script", "iframe", "img", "link", "object")]
    for _, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")]
        assert "src" not in attrs
    assert set(re.findall(r"url\(([^)]*)\)", html)) == {"#arrow"}
    assert "default-src 'none'" in html


EVIL = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "--></style><script>alert(2)</script><!--",
    "</svg><iframe src=//evil.example>",
    "&lt;already escaped&gt;",
]


def evil_spec() -> str:
    """The edge-schemas spec with markup in every string the page shows."""
    spec = yaml.safe_load((REPO / "tests" / "specs" / "edge_schemas.yaml").read_text("utf-8"))
    spec["info"]["title"] = EVIL[0]
    spec["info"]["description"] = " ".join(EVIL)
    spec["x-jetstream-streams"]["EDGE"]["description"] = EVIL[1]
    channel = spec["channels"]["corners"]
    channel["description"] = EVIL[2]
    message = channel["messages"]["Corners"]
    message["description"] = EVIL[3]
    message["payload"]["properties"]["grid"]["description"] = EVIL[0]
    message["payload"]["properties"]["label"] = {"type": "string", "enum": EVIL[:3]}
    message["examples"][0]["name"] = EVIL[1]
    message["examples"][0]["payload"]["label"] = EVIL[2]
    spec["operations"]["cornerWatcher"]["summary"] = EVIL[3]
    spec["channels"]["deadLetters"]["parameters"]["consumer"]["description"] = EVIL[4]
    return str(yaml.safe_dump(spec, sort_keys=False))


def test_no_string_from_the_spec_becomes_markup() -> None:
    """Script tags, attribute breakouts, comment and style closers in titles, descriptions,
    enum values, example names and payloads: the page shows them as text."""
    doc, _ = build(load_text(evil_spec(), "evil.yaml"))
    html = render_docs(doc)
    page = Page(html)
    allowed = {
        "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "span",
        "p", "nav", "ul", "li", "a", "main", "svg", "defs", "marker", "path", "line", "rect",
        "text", "section", "code", "table", "thead", "tbody", "tr", "th", "td", "em", "pre",
    }  # fmt: skip
    assert {tag for tag, _ in page.tags} <= allowed
    for _, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")]
    assert html.count("<!--") == 1 and html.count("-->") == 1  # the header's comment only
    assert html.count("</style>") == 2 and html.count("</svg>") == 1  # the page's, the svg's
    text = "".join(page.text)
    for evil in EVIL:
        assert evil in text or evil.replace('"', '\\"') in text, evil


def test_docs_are_current() -> None:
    """`just check` compares the committed page too; this says so without the CLI."""
    doc = spec_under_test("filetrash").doc
    assert (REPO / DOCS_PATH).read_text(encoding="utf-8") == render_docs(doc)


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    doc = spec_under_test("shop").doc
    assert render_docs(doc) == render_docs(doc)
