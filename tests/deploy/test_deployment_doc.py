"""docs/deployment.md as an operator reads it: the README's first screen sends them there; each mode of operation has
its picture, drawn from the Graphviz text beside it (`make diagrams`); the ports, the drain and the sizing it states
are the code's defaults and docs/performance.md's latest figures, not a copy that went stale.

Why these are tests: the guide is written once and the code and the measurements move under it (session 5 left its
sizing on session 2's figures: 78 calls per core and 12-17 us per packet, where the last table said 125 and 8.9).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from callsd.app.config import HttpConfig, RtcConfig, ShutdownConfig
from callsd.app.rtcd_config import ApiConfig
from haproxy_support import DEPLOYED as HAPROXY_CFG
from nginx_support import DEPLOYED as NGINX_CONF

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "deployment.md"
PERFORMANCE = REPO / "docs" / "performance.md"
README_FIRST_SCREEN = 12  # lines: what a terminal or the repository page shows before any scrolling

# The issue's modes of operation, each a "### N. Title" section of the guide with a diagram.
MODES = ("integrated single node", "media workers", "remote rtcd hosts", "clustered with postgresql", "single handler")


def _section(text: str, heading: str) -> str:
    """The body of the section whose heading line is ``heading`` (any level), up to the next heading of that level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.MULTILINE)
    assert match, f"no section {heading!r}"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[:end.start()] if end else rest


def _table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (separator rows left out)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| :]+\|", line.strip()):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_readmes_first_screen_points_to_the_guide() -> None:
    first_screen = (REPO / "README.md").read_text().splitlines()[:README_FIRST_SCREEN]
    assert any("(docs/deployment.md)" in line for line in first_screen), first_screen


def _mode_sections() -> dict[str, str]:
    modes = _section(GUIDE.read_text(), "Modes of operation")
    headings = re.findall(r"^### (\d+)\. (.+)$", modes, re.MULTILINE)
    return {title.lower(): _section(modes, f"{number}. {title}") for number, title in headings}


def test_every_mode_of_the_issue_has_a_section_with_a_diagram() -> None:
    sections = _mode_sections()
    assert tuple(sections) == MODES
    for mode, body in sections.items():
        images = re.findall(r"!\[[^\]]+\]\((deployment/[\w-]+\.png)\)", body)
        assert len(images) == 1, f"{mode}: {images}"
        png = GUIDE.parent / images[0]
        assert png.is_file() and png.with_suffix(".dot").is_file(), f"{mode}: {png} and its .dot source"


@pytest.mark.parametrize("source", sorted((REPO / "docs" / "deployment").glob("*.dot")), ids=lambda p: p.stem)
def test_each_committed_diagram_is_its_source_rendered(source: Path, tmp_path: Path) -> None:
    """The PNG is what `make diagrams` draws from the .dot today (Debian's Graphviz, Helvetica as Liberation Sans
    from fonts-liberation2, both from scripts/system-deps.sh: byte for byte), so an edit of the text that was not
    re-rendered, or a picture edited by hand, fails here."""
    assert shutil.which("dot"), "Graphviz missing: bash scripts/system-deps.sh installs it"
    rendered = tmp_path / "rendered.png"
    subprocess.run(["dot", "-Tpng", "-Gdpi=90", str(source), "-o", str(rendered)], check=True, timeout=60)
    assert rendered.read_bytes() == source.with_suffix(".png").read_bytes(), f"make diagrams: {source.name} changed"
    assert f"deployment/{source.stem}.png" in GUIDE.read_text(), f"{source.name} is drawn but not shown"


def test_every_link_of_the_guide_leads_to_a_file() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", GUIDE.read_text())
    local = [link for link in links if "://" not in link]
    assert local
    missing = [link for link in local if not (GUIDE.parent / link).exists()]
    assert missing == []


def test_the_ports_table_lists_every_default_listener() -> None:
    rows = _table_rows(_section(GUIDE.read_text(), "Ports"))
    ports = {(row[1], row[2]) for row in rows[1:]}
    http, rtc = HttpConfig(), RtcConfig()
    for port, protocol in ((http.port, "TCP"), (rtc.ice_port_udp, "UDP"), (rtc.ice_port_tcp, "TCP"),
                           (ApiConfig().port, "TCP")):
        assert any(listed == str(port) and protocol in protocols for listed, protocols in ports), (port, protocol)


def test_the_tls_section_links_the_proxy_configurations_the_cluster_tests_run() -> None:
    tls = _section(GUIDE.read_text(), "TLS: serve behind a reverse proxy")
    for deployed in (HAPROXY_CFG, NGINX_CONF):
        assert f"(../{deployed.relative_to(REPO)})" in tls, deployed.name


def _config_line(line: str) -> str:
    """A proxy configuration line as compared: a leading ``#`` (a line shipped commented out, like HAProxy's TLS
    ``bind``) and a trailing comment dropped, blanks collapsed."""
    body = line.strip().removeprefix("#").split(" #", 1)[0]
    return " ".join(body.split())


def test_the_tls_snippets_are_lines_of_the_tested_proxy_files() -> None:
    """The excerpts the guide shows are in the files the cluster tests run, so they cannot drift apart."""
    tls = _section(GUIDE.read_text(), "TLS: serve behind a reverse proxy")
    blocks = re.findall(r"^ {6}# (deploy/proxy/\S+?),?(?: .*)?\n((?: {6}\S.*\n)+)", tls, re.MULTILINE)
    assert {path for path, _ in blocks} == {str(p.relative_to(REPO)) for p in (HAPROXY_CFG, NGINX_CONF)}
    for path, block in blocks:
        shipped = {_config_line(line) for line in (REPO / path).read_text().splitlines()}
        for line in block.splitlines():
            assert _config_line(line) in shipped, f"{path}: {line.strip()!r}"


def test_the_drain_the_guide_describes_is_the_codes_and_the_manifests() -> None:
    drain = _section(GUIDE.read_text(), "Upgrades and drain")
    serve_default = ShutdownConfig().drain_timeout
    manifests = tomllib.loads((REPO / "deploy/k8s/base/serve.toml").read_text())["shutdown"]["drain_timeout"]
    assert f"`shutdown.drain_timeout` ({serve_default:g} s by default, {manifests:g} s in the manifests)" in drain
    assert f"`api.drain_timeout` ({ApiConfig().drain_timeout / 3600:g} h)" in drain


def _latest_targets() -> dict[str, str]:
    """docs/performance.md's last table of issue 13's targets: each target's figure in its newest column."""
    text = PERFORMANCE.read_text()
    start = text.rindex("\n| target |")
    rows = _table_rows(text[start:].split("\n\n", 1)[0])
    header, body = rows[0], rows[1:]
    newest = len(header) - 2  # | target | ... | <newest session>'s end | met |
    assert header[newest].endswith("end"), header
    return {row[0]: row[newest] for row in body}


def _first_figure(cell: str, unit: str) -> str:
    match = re.search(rf"(\d+(?:\.\d+)?)\s*{unit}", cell)
    assert match, (cell, unit)
    return match.group(1)


def test_the_sizing_quotes_the_latest_figures_of_the_performance_doc() -> None:
    """When a session measures anew and writes a new last table, the guide's sizing must follow."""
    targets = _latest_targets()
    sizing = _section(GUIDE.read_text(), "Sizing")

    def target(prefix: str) -> str:
        [cell] = [value for name, value in targets.items() if name.startswith(prefix)]
        return cell

    per_packet = _first_figure(target("server CPU per egress packet"), "µs")
    calls = _first_figure(target("calls × 8 × 2 on one core"), "")
    per_session = _first_figure(target("RSS per session"), "KiB")
    assert re.search(rf"\*\*{re.escape(per_packet)}\*\*", sizing), f"µs per egress packet: {per_packet}"
    assert f"**{calls} calls at 0 % loss**" in sizing, f"calls × 8 × 2 per core: {calls}"
    assert f"**{per_session} KiB RSS per media session**" in sizing, f"RSS per session: {per_session}"
