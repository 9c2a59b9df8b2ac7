"""The "Feeds" page of the Airflow UI: the sources with their access tags, the catalog, each feed's releases
with their data cards and charts (funnel, languages, token lengths, reject reasons), retrieval recall over time, a
lineage graph, record lineage and search. Server-rendered HTML (Jinja2, the data cards through
markdown-it); the Airflow plugin (``plugins/feedstock_ui.py``) mounts it behind Airflow's own authentication.
"""

from __future__ import annotations

import html
import json
import posixpath
from typing import Any

from jinja2 import Environment
from markdown_it import MarkdownIt

from feedstock.catalog import catalog
from feedstock.config import Config
from feedstock.lake import Lake

_MARKDOWN = MarkdownIt("commonmark").enable("table")

_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html><head><meta charset="utf-8"><title>feedstock: feeds</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #d0d7de; padding: 2px 8px; }
th { background: #f6f8fa; text-align: left; } .num { text-align: right; } code { font-size: 12px; }
details { margin: .4rem 0; } summary { cursor: pointer; font-weight: 600; }
.card { border: 1px solid #d0d7de; padding: .2rem 1rem; margin: .4rem 0 1rem; max-width: 70rem; overflow-x: auto; }
.graph { display: flex; gap: 2rem; align-items: flex-start; } .graph ul { list-style: none; padding: 0; }
.graph li { border: 1px solid #8c959f; border-radius: 4px; padding: 2px 6px; margin: 4px 0; }
.hit { margin: .5rem 0; } .muted { color: #59636e; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; } .charts figure { margin: 0; }
.charts figcaption { font-weight: 600; font-size: 12px; } .tag { background: #ddf4ff; border-radius: 8px; padding: 0 6px; }
</style></head><body>
<h1>feedstock: feeds</h1>
<form action="search" method="get"><b>Search the RAG index</b>
  <input name="q" size="60" value="{{ query }}" aria-label="question"> <button>Search</button></form>
<form action="lineage" method="get"><b>Lineage of a record</b>
  <input name="record" size="50" value="{{ record }}" aria-label="record id" placeholder="tickets/1004">
  <button>Trace</button></form>
<p><a href="dbt-docs">dbt docs</a>: the models, their columns and tests, and dbt's lineage graph.</p>
{{ extra | safe }}
<h2 id="sources">Sources ({{ sources | length }})</h2>
<table><tr><th>source</th><th>kind</th><th>where</th><th>access tags</th></tr>
{% for s in sources %}<tr><td><code>{{ s.name }}</code></td><td>{{ s.kind }}</td><td><code>{{ s.where }}</code></td>
<td>{% for t in s.access_tags %}<span class="tag">{{ t }}</span> {% else %}<span class="muted">none: everyone</span>{% endfor %}</td></tr>
{% endfor %}</table>
<p class="muted">A source's access tags reach every chunk, cache entry and fine-tuning example derived from it;
search and the cache serve a caller only what its tags allow.</p>
<h2 id="datasets">Datasets ({{ entries | length }})</h2>
<table><tr><th>dataset</th><th>version</th><th class="num">rows</th><th>produced by</th><th>inputs</th>
<th>created</th></tr>
{% for e in entries %}<tr><td><code>{{ e.name }}</code>{% if e.detached %} (detached){% endif %}</td>
<td class="num">{{ e.version }}</td><td class="num">{{ "{:,}".format(e.rows) }}</td>
<td>{{ e.produced_by.get("dag_id", "") }}.{{ e.produced_by.get("task_id", "") }}</td>
<td>{% for i in e.inputs[:4] %}<code>{{ i }}</code> {% endfor %}{% if e.inputs | length > 4 %}+{{ e.inputs | length - 4 }}{% endif %}</td>
<td>{{ e.created_at[:19] }}</td></tr>
{% endfor %}</table>
<h2 id="lineage-graph">Lineage: sources, bronze, feeds</h2>
<div class="graph">{% for column, names in graph %}<div><b>{{ column }}</b><ul>
{% for n in names %}<li><code>{{ n }}</code></li>{% endfor %}</ul></div>{% endfor %}</div>
<h2 id="rag">RAG index</h2>
{% if recall %}{{ recall | safe }}{% else %}<p class="muted">no release yet</p>{% endif %}
<h2 id="releases">Releases</h2>
{% for feed, cards in releases %}<h3>{{ feed }}</h3>
{% for title, charts, card in cards %}<details {% if loop.first %}open{% endif %}><summary>{{ title }}</summary>
<div class="charts">{{ charts | safe }}</div><div class="card">{{ card | safe }}</div></details>{% endfor %}
{% if not cards %}<p class="muted">no release yet</p>{% endif %}{% endfor %}
</body></html>"""
)


def page(config: Config, lake: Lake, query: str = "", record: str = "", extra: str = "") -> str:
    """The whole page; ``extra`` (already HTML) goes above the catalog: search results or a lineage."""
    configured = {s.name for s in (*config.sources, *config.broken)}
    entries = catalog(lake, configured)
    return _PAGE.render(
        sources=[
            {
                "name": s.name,
                "kind": s.kind,
                "where": getattr(s, "uri", None) or f"{s.conn_id}: {s.table or 'query'}",
                "access_tags": s.access_tags,
            }
            for s in config.sources
        ],
        entries=entries,
        graph=graph(config, entries),
        recall=recall_chart(lake),
        releases=[("pretraining", _cards(lake, "pretrain")), ("fine-tuning", _cards(lake, "finetune"))],
        query=query,
        record=record,
        extra=extra,
    )


def graph(config: Config, entries) -> list[tuple[str, list[str]]]:
    """Columns of the lineage graph, from the configuration and the catalog: sources, bronze, dbt marts and the
    feeds' published tables."""
    names = [e.name for e in entries]
    return [
        (
            "sources",
            [f"{s.name} ({type(s).__name__.removesuffix('Source').lower()})" for s in config.sources],
        ),
        ("bronze", [n for n in names if n.startswith("bronze.")]),
        ("dbt marts", ["rag_documents", "pretrain_documents", "finetune_conversations"]),
        ("feeds", [n for n in names if n.split(".")[0] in ("rag", "pretrain", "finetune")]),
        ("governance", [n for n in names if n.startswith("governance.")]),
    ]


def recall_chart(lake: Lake) -> str:
    """Recall@5 and MRR of each RAG release, as a small SVG line chart."""
    points = [
        (c["version"], (c.get("stats") or {}).get("recall_at_5"), (c.get("stats") or {}).get("mrr"))
        for c in reversed(lake.history("rag.index"))
        if (c.get("stats") or {}).get("recall_at_5") is not None
    ]
    if not points:
        return ""
    width, height, step = 480, 160, 480 / max(len(points), 2)

    def line(values: list[float], colour: str) -> str:
        xy = " ".join(
            f"{20 + i * step:.0f},{height - 20 - v * (height - 40):.0f}" for i, v in enumerate(values)
        )
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{xy}"/>'

    labels = "".join(
        f'<text x="{20 + i * step:.0f}" y="{height - 4}" font-size="10">v{v}</text>'
        for i, (v, _, _) in enumerate(points)
    )
    latest = points[-1]
    return (
        f'<svg role="img" aria-label="retrieval recall over releases" width="{width + 40}" height="{height}">'
        f'<line x1="20" y1="{height - 20}" x2="{width}" y2="{height - 20}" stroke="#8c959f"/>'
        f"{line([p[1] for p in points], '#1f6feb')}{line([p[2] or 0 for p in points], '#bf3989')}{labels}</svg>"
        f'<p><span style="color:#1f6feb">recall@5</span> {latest[1]:.3f}, <span style="color:#bf3989">MRR</span> '
        f"{(latest[2] or 0):.3f} at version {latest[0]} ({len(points)} releases)</p>"
    )


LABEL_CHARS = 60  # a bar's label is cut past this (the bar's tooltip has it whole)


def bar_chart(title: str, counts: dict[str, int], colour: str = "#1f6feb") -> str:
    """Horizontal bars, one per key in the given order, as an SVG figure (empty for no counts)."""
    if not counts or not any(counts.values()):
        return ""
    labels = {k: str(k)[:LABEL_CHARS] for k in counts}
    # wide enough for the longest label (11 px text, about 6.5 px a character), so rule names show whole
    peak, row, width = max(counts.values()), 18, 220
    label_width = max(120, round(6.5 * max(map(len, labels.values()))) + 12)
    bars = "".join(
        f'<text x="{label_width - 6}" y="{i * row + 13}" font-size="11" text-anchor="end">'
        f"{html.escape(labels[k])}</text>"
        f'<rect x="{label_width}" y="{i * row + 3}" width="{max(1, round(width * v / peak))}" height="{row - 6}" '
        f'fill="{colour}"><title>{html.escape(str(k))}: {v:,}</title></rect>'
        f'<text x="{label_width + max(1, round(width * v / peak)) + 4}" y="{i * row + 13}" font-size="11">{v:,}</text>'
        for i, (k, v) in enumerate(counts.items())
    )
    return (
        f'<figure><figcaption>{html.escape(title)}</figcaption><svg role="img" aria-label="{html.escape(title)}" '
        f'width="{label_width + width + 60}" height="{len(counts) * row + 4}">{bars}</svg></figure>'
    )


def release_charts(feed: str, stats: dict[str, Any]) -> str:
    """The charts of one release, from its ``stats.json``: what people would rather look at than read."""
    top = lambda counts, n=12: dict(sorted(counts.items(), key=lambda kv: -kv[1])[:n])  # noqa: E731
    if feed == "finetune":
        funnel = {f["stage"]: f["out"] for f in stats.get("funnel", [])}
        return (
            bar_chart("examples kept after each stage", funnel)
            + bar_chart("token lengths (examples)", stats.get("token_histogram") or {}, "#8250df")
            + bar_chart("reject reasons", top(stats.get("rejects_by_reason") or {}), "#cf222e")
        )
    drops = {
        r: n for reasons in (stats.get("drops_by_stage") or {}).values() for r, n in reasons.items() if n
    }
    return (
        bar_chart("languages (documents)", top(stats.get("languages") or {}))
        + bar_chart("token lengths (documents)", stats.get("token_histogram") or {}, "#8250df")
        + bar_chart("drop reasons", top(drops), "#cf222e")
    )


def _cards(lake: Lake, feed: str) -> list[tuple[str, str, str]]:
    """Each release's title, charts and data card (newest first), rendered."""
    fs = lake.fs
    path = posixpath.join(lake.root_path, feed, "releases")
    if not fs.exists(path):
        return []
    cards = []
    for release in sorted(fs.ls(path, detail=False), reverse=True):
        card = posixpath.join(release, "README.md")
        if fs.exists(card):
            with fs.open(card, "r", encoding="utf-8") as handle:
                text = handle.read()
            stats_file = posixpath.join(release, "stats.json")
            stats = {}
            if fs.exists(stats_file):
                with fs.open(stats_file, "r", encoding="utf-8") as handle:
                    stats = json.load(handle)
            cards.append(
                (
                    f"release {int(posixpath.basename(release))}",
                    release_charts(feed, stats),
                    _MARKDOWN.render(_without_front_matter(text)),
                )
            )
    return cards


def _without_front_matter(text: str) -> str:
    """A Hugging Face card's YAML header is metadata, not something to read."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end > 0:
            return text[end + 5 :]
    return text


def search_results(hits: list[dict[str, Any]], query: str) -> str:
    rows = "".join(
        f'<div class="hit"><b>{rank}. {html.escape(h["doc_id"])}</b> <span class="muted">score '
        f"{h['score']:.3f} · {html.escape(h.get('section') or '')}</span><br>{html.escape(h['text'][:300])}</div>"
        for rank, h in enumerate(hits, 1)
    )
    return f'<h2 id="results">Results for “{html.escape(query)}”</h2>' + (rows or "<p>no results</p>")


def lineage_html(text: str) -> str:
    return f'<h2 id="lineage">Lineage</h2><pre>{html.escape(text)}</pre>'
