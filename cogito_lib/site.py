"""A run dir's executed notebooks as a static HTML site that works offline.

    python -m cogito_lib.site runs/mini                 # what `make html RUN_DIR=runs/mini` calls
    python -m cogito_lib.site runs/mini --out /tmp/site # elsewhere

Writes `RUN_DIR/html/index.html` (the stages in order, with each notebook's status, wall and CPU time from
`metrics.json`) and one page per executed notebook. Every image and audio clip is already embedded in the notebooks
(plots as PNG, the views' static twins as `data:` URLs), and the pages load no script from the network: no
require.js, MathJax, Mermaid or ipywidgets JavaScript. Widget outputs show their static twin, so a page reads the
same on a laptop without a network, on a course website or as an e-mail attachment.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Sequence

from .io import DEBUG_HELP, atomic_write_text, cli_main, read_json

OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def executed_notebooks(run_dir: str | Path) -> list[Path]:
    """The executed stage notebooks of a run dir, in stage order."""
    return sorted(Path(run_dir).glob("[0-9][0-9]-*.ipynb"))


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                        template_file="offline.html.j2")


def render_notebook(notebook: str | Path, out_dir: str | Path, exporter=None) -> Path:
    """One executed notebook as `out_dir/<name>.html`."""
    import nbformat

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    # without widget state nbconvert shows a widget output's static twin (its text/html), not the widget view that
    # would need the ipywidgets JavaScript from the network
    nb.metadata.pop("widgets", None)
    body, _ = (exporter or _exporter()).from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    return atomic_write_text(Path(out_dir) / f"{notebook.stem}.html", body)


def _title(notebook: Path) -> str:
    """The notebook's first heading (`02 · Data collection (Cogito-pipe stage 1)`), else its name."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for line in source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem


def index_html(run_dir: Path, pages: list[tuple[Path, Path]]) -> str:
    """The site's front page: the run's profile and its notebooks in order, with status, wall and CPU time."""
    metrics = read_json(run_dir / "metrics.json", {}) or {}
    profile = (read_json(run_dir / "profile.json", {}) or {}).get("name", "?")
    rows = []
    for notebook, page in pages:
        run = metrics.get("notebooks", {}).get(notebook.stem, {})
        wall, cpu = (f"{run[key]:.0f} s" if isinstance(run.get(key), (int, float)) else "" for key in ("wall_s", "cpu_s"))
        rows.append(f"<tr><td><a href='{html.escape(page.name)}'>{html.escape(_title(notebook))}</a></td>"
                    f"<td>{html.escape(str(run.get('status', '')))}</td><td style='text-align:right'>{wall}</td>"
                    f"<td style='text-align:right'>{cpu}</td></tr>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Audio-Cogito run: "
            f"{html.escape(run_dir.name)}</title><style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}"
            "td,th{padding:4px 12px;text-align:left}</style></head><body>"
            f"<h1>Audio-Cogito research kit: run <code>{html.escape(run_dir.name)}</code></h1>"
            f"<p>Profile <b>{html.escape(str(profile))}</b>. The executed notebooks, in the order they ran; every "
            "figure and audio clip is embedded, so these pages work offline.</p>"
            "<table><tr><th>notebook</th><th>status</th><th>wall time</th><th>CPU time</th></tr>" + "".join(rows)
            + "</table>"
            "</body></html>")


def build_site(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render every executed notebook of `run_dir` and an index; return the index's path."""
    run_dir = Path(run_dir).expanduser().resolve()
    notebooks = executed_notebooks(run_dir)
    if not notebooks:
        raise FileNotFoundError(f"{run_dir} holds no executed notebook (NN-*.ipynb): run `make reproduce` (or "
                                "`python -m cogito_lib.run --run-dir ...`) first")
    out_dir = Path(out).expanduser().resolve() if out else run_dir / "html"
    exporter = _exporter()
    pages = []
    for notebook in notebooks:
        pages.append((notebook, render_notebook(notebook, out_dir, exporter)))
        print(f"{notebook.name} -> {pages[-1][1]}", flush=True)
    return atomic_write_text(out_dir / "index.html", index_html(run_dir, pages))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.site", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run dir with executed notebooks, e.g. runs/mini")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/html)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    return cli_main(lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    print(f"open {build_site(args.run_dir, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
