"""Issue 24, "every figure right, readable, and short": each item an assertion on what a reader sees.

The rendered HTML is read back with ``test_report.Page`` (html.parser);
figures are checked in their inline SVG through the ``gid`` names
:mod:`reports.figures` gives the lines that matter (``published-0``,
``published-t0``, ``resources-<row>-cpu-<mode>``, ``resources-legend-entry-<i>``).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import run_bench, run_locust
from test_report import FIXTURE, Page, number

from deliverybench.cli.summary import summary_table
from deliverybench.core import numbers
from deliverybench.core.fingerprint import fingerprint_diff, workload_fingerprint
from deliverybench.core.gate_report import to_markdown
from deliverybench.core.model import Run
from deliverybench.core.options import by_dest
from deliverybench.core.results import loads
from reports import frames as F
from reports import render_report

NS = 1_000_000_000


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return loads(FIXTURE.read_text(encoding="utf-8"))


def _render(tmp: Path, document: dict[str, Any]) -> str:
    return render_report([document], tmp).read_text(encoding="utf-8")


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}"')
    return html[start:html.index("</section>", start)]


def _figure(html: str, fid: str) -> str:
    start = html.index(f'<figure id="{fid}"')
    return html[start:html.index("</figure>", start)]


def _first_x(svg: str, gid: str) -> float:
    """Where the first path of the element named ``gid`` starts, in SVG units."""
    found = re.search(rf'<g id="{re.escape(gid)}">\s*<path d="M\s*(-?[\d.]+)', svg)
    assert found, f"no path named {gid}"
    return float(found.group(1))


# --------------------------------------------------------------------------- built-in target, both paths


@pytest.mark.e2e
def test_builtin_target_has_one_kind_on_both_paths(tmp_path: Path) -> None:
    """A run_bench.py run and a plain ``locust -f`` run of one workload against the built-in target are
    comparable: both say ``target.kind builtin`` (run_bench.py's Locust used to write ``external``)."""
    workload = ["--rate", "5", "--duration", "2", "--drain", "1"]
    bench_dir, plain_dir = tmp_path / "bench", tmp_path / "plain"
    bench_dir.mkdir()
    plain_dir.mkdir()
    proc = run_bench(bench_dir, "--modes", "push", "-u", "5", *workload, "--no-report")
    assert proc.returncode == 0, proc.stderr
    bench = Run.from_dict(loads((bench_dir / "run" / "results.json").read_text()))
    _, plain_doc = run_locust("ws_push.py", plain_dir, *workload, users=5)
    plain = Run.from_dict(plain_doc)
    kinds = {path: doc.modes["push"].target.kind for path, doc in (("run_bench.py", bench), ("locust -f", plain))}
    assert kinds == {"run_bench.py": "builtin", "locust -f": "builtin"}
    assert bench.modes["push"].target.name == plain.modes["push"].target.name
    diff = fingerprint_diff(workload_fingerprint(bench, "push"), workload_fingerprint(plain, "push"))
    assert not [field for field, _, _ in diff if field.startswith("target.")], diff


# --------------------------------------------------------------------------- cost chart


def _with_machine_roles(doc: dict[str, Any]) -> dict[str, Any]:
    """The fixture as a real run samples it: target, harness, machine and steal rows for every mode."""
    out = copy.deepcopy(doc)
    for result in out["modes"].values():
        rows = result["resources"]["rows"]
        targets = [row for row in rows if row[1] == "target"]
        rows += [[row[0], role, 0, *row[3:]] for role in ("machine", "steal") for row in targets]
    return out


def test_cost_chart_is_small_multiples_one_line_per_mode(doc: dict[str, Any], tmp_path: Path) -> None:
    html = _render(tmp_path, _with_machine_roles(doc))
    svg = _figure(html, "fig-resources")
    modes = list(doc["modes"])
    # one legend entry per mode (it was mode x role: 12), the roles are panels instead
    assert len(re.findall(r'id="resources-legend-entry-\d+"', svg)) == len(modes)
    # target, harness, machine: CPU and RSS; steal: CPU only
    assert len(re.findall(r'id="axes_\d+"', svg)) == 7
    styles: dict[tuple[str, str], list[str]] = {}
    for panel, kind, _i, style in re.findall(
            r'<g id="resources-(\d+)-(cpu|rss)-(\d+)">\s*<path [^>]*?style="([^"]*)"', svg):
        stroke = re.search(r"stroke: (#[0-9a-f]{6})", style)
        dash = re.search(r"stroke-dasharray: ([^;]+)", style)
        look = f"{stroke.group(1) if stroke else ''} {dash.group(1) if dash else ''}"
        styles.setdefault((panel, kind), []).append(look)
    assert len(styles) == 7
    for panel, looks in styles.items():
        assert len(looks) == len(modes) and len(set(looks)) == len(looks), (panel, looks)  # every line its own look
    assert "one colour per mode" in html


# --------------------------------------------------------------------------- published per second


def _late_start(doc: dict[str, Any], offset_ns: int = 400_000_000) -> dict[str, Any]:
    """The fixture with every stream starting ``offset_ns`` into a wall-clock second, as real runs do:
    due times move, and published events are re-counted per wall-clock second as the harness counts them."""
    out = copy.deepcopy(doc)
    for result in out["modes"].values():
        result["stream_start_ns"] += offset_ns
        columns = result["fanout"]["columns"]
        due_at, expected_at = columns.index("due_ns"), columns.index("expected")
        for row in result["fanout"]["rows"]:
            row[due_at] += offset_ns
        per_second = Counter(row[due_at] // NS for row in result["fanout"]["rows"] if row[expected_at])
        published_at = result["series"]["columns"].index("published")
        for row in result["series"]["rows"]:
            row[published_at] = per_second.pop(row[0], 0)
        assert not per_second  # every second that published has a series row
    return out


def test_published_per_second_is_binned_from_the_first_due_time(doc: dict[str, Any], tmp_path: Path) -> None:
    late = _late_start(doc)
    run = Run.from_dict(late)
    published = F.published_frame(F.mode_refs([run]))
    rate = int(doc["modes"]["push"]["params"]["rate"])
    for label, group in published.groupby("label"):
        assert group["t_s"].iloc[0] == 0.0 and list(group["t_s"]) == list(range(len(group))), label
        assert not group["partial"].any()
        refused = doc["modes"][label]["audit"]["refused"]
        assert sorted(group["published"])[refused:] == [rate] * (len(group) - refused), label  # a flat line
    html = _render(tmp_path, late)
    svg = _figure(html, "fig-throughput-time")
    zero = _first_x(svg, "published-t0")
    for i in range(len(doc["modes"])):
        assert _first_x(svg, f"published-{i}") == pytest.approx(zero, abs=0.05)  # starts at 0, not before it
        # deliveries are per wall-clock second: the bin holding the stream's start is marked partial
        assert f'id="deliveries-{i}-partial"' in svg
        assert _first_x(svg, f"deliveries-{i}") < zero
    assert "Hollow dots are partial seconds" in _section(html, "over-time")


def test_partial_seconds_are_the_bins_the_stream_starts_or_ends_in(doc: dict[str, Any]) -> None:
    late = Run.from_dict(_late_start(doc))
    series = F.series_frame(F.mode_refs([late]))
    push = series[series["label"] == "push"]
    length = doc["modes"]["push"]["params"]["duration_s"]
    straddling = push[(push["t_s"] < 0) & (push["t_s"] + 1 > 0) | (push["t_s"] < length) & (push["t_s"] + 1 > length)]
    assert list(push[push["partial"]]["t_s"]) == list(straddling["t_s"]) and len(straddling) == 2


# --------------------------------------------------------------------------- metadata


def test_metadata_is_collapsed_without_nulls_and_shows_changed_options(doc: dict[str, Any], tmp_path: Path) -> None:
    noisy = copy.deepcopy(doc)
    noisy["config"]["locust"] = {"autoquit": -1, "config": None, "csv_prefix": None, "num_users": 20,
                                 "host": None, "web_port": 8089, "payload_bytes": 256}
    noisy["config"]["payload_bytes"] = 256  # at its default
    noisy["config"]["modes"] = list(by_dest("modes").default)  # at its default (push, callback, poll when recorded)
    noisy["config"]["webhook_secret"] = ""  # empty
    html = _render(tmp_path, noisy)
    meta = _section(html, "metadata")
    page = Page(meta)
    assert meta.count("<details") == 1 and "<summary>" in meta
    summary = meta[meta.index("<summary>"):meta.index("</summary>")]
    assert doc["run"]["commit"][:12] in summary and doc["machine"]["cpu_model"] in summary
    assert "null" not in meta and "locust." not in meta and "autoquit" not in meta
    options = {r["option"]: r for r in page.rows("options-table")}
    assert set(options) == {"subscribers", "rate", "duration_s", "processes", "out", "slo.p99_ms", "note"}
    assert options["subscribers"]["default"] == f"{by_dest('subscribers').default}"
    assert "payload_bytes" not in options and "webhook_secret" not in options
    for table in page.tables.values():  # no empty cells anywhere in the metadata
        for row in table:
            assert all(cell["text"].strip() for cell in row["cells"]), row
    # every table is inside the (closed) <details>: the page shows one summary line, not ~45 % of its length
    outside = meta[:meta.index("<details")] + meta[meta.index("</details>"):]
    assert "<table" not in outside and "<details open" not in meta
    assert sum(len(t) for t in page.tables.values()) <= 60  # 97 rows before, and a Locust block adds ~100
    modes = {r["key"]: r for r in page.rows("modes-meta-table")}  # one row per fact, one column per mode
    assert page.headers("modes-meta-table") == ["key", *doc["modes"]]
    assert modes["target.kind"]["push"] == "builtin" and modes["params.subscribers"]["poll"] == "20"


# --------------------------------------------------------------------------- one number rule


def test_number_rule() -> None:
    assert numbers.ms(992.767) == "992.77" and numbers.ms(1112.063) == "1,112" and numbers.ms(0.5) == "0.50"
    assert numbers.signed_ms(-1020.4) == "-1,020" and numbers.signed_ms(1.234) == "+1.23"
    assert numbers.count(1895) == "1,895" and numbers.rate(474.762) == "474.8"
    assert numbers.percent(0.123) == "12.3 %" and numbers.cpu_seconds(9.795) == "9.79"
    for fmt in (numbers.ms, numbers.count, numbers.rate, numbers.percent, numbers.cpu_seconds):
        assert fmt(None) == fmt(float("nan")) == numbers.MISSING == "—"


def _console_rows(document: dict[str, Any]) -> dict[str, list[str]]:
    lines = summary_table(document).splitlines()
    return {line.split()[0]: line.split() for line in lines[2:] if not line.startswith("!")}


def test_console_report_and_markdown_spell_latencies_alike(doc: dict[str, Any], tmp_path: Path) -> None:
    console = _console_rows(doc)
    page = Page(_render(tmp_path, doc))
    headline = {r["_label"]: r for r in page.rows("headline-table")}
    for mode, result in doc["modes"].items():
        summary = result["summary"]["delivery"]
        for key, at in (("p50", 3), ("p99", 5), ("p99_9", 6), ("max", 7)):
            shown = numbers.ms(summary[key])
            assert console[mode][at] == shown == headline[mode][key], (mode, key)
        assert console[mode][8] == numbers.rate(result["throughput"]["deliveries_per_s"]) == headline[mode][
            "deliveries_per_s"]
    assert headline["callback"]["p99_9"] == "1,112" and console["push"][3] == "1.82"
    slo = {"mode": "poll", "clause": "poll.p99<=1000ms", "metric": "p99", "observed": 992.767, "limit": 1000.0,
           "ok": True, "reason": "p99 993 ms <= 1000 ms"}
    assert "| poll | `poll.p99<=1000ms` | 992.77 ms | ✅ met |" in to_markdown(None, slo_outcomes=[slo])


def test_console_prints_a_dash_for_an_unmeasured_target(doc: dict[str, Any], tmp_path: Path) -> None:
    external = copy.deepcopy(doc)
    for result in external["modes"].values():
        result["target"] = {"name": "relay", "kind": "external", "urls": {}}
        result["resources"]["costs"].pop("target")
        result["resources"]["rows"] = [row for row in result["resources"]["rows"] if row[1] != "target"]
    console = _console_rows(external)
    header = summary_table(external).splitlines()[0]
    assert header.rstrip().endswith("target cpu s")
    for mode in doc["modes"]:
        assert console[mode][-1] == "—" and console[mode][-2] != "—", console[mode]
    cost = {r["_label"]: r for r in Page(_render(tmp_path, external)).rows("cost-table")}
    assert all(r["target_cpu_s"] == "—" for r in cost.values())
    measured = _console_rows(doc)
    assert number(measured["push"][-1]) == pytest.approx(doc["modes"]["push"]["resources"]["costs"]["target"]["cpu_s"],
                                                        abs=0.005 + 1e-9)
