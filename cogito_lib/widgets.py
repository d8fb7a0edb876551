"""Notebook views of a run: clips, questions, reasoning traces, the pipeline, the evaluation's wins.

Every view is two things at once: an ipywidgets view for a live Jupyter session (filters, dropdowns, players), and
its **static twin**, plain HTML with the audio and images embedded (`<audio src="data:...">`, `<img src=...>`), which
is what a saved notebook and its HTML export keep. In a live session a view's output carries both (Jupyter shows the
widget; nbconvert and viewers without the widget state show the twin); in a headless run (the papermill runner, the
nbval tier: `cogito_lib.env.headless()`) no widget is built and the twin is the output, so an executed notebook shows
every example offline and carries no widget state.

The views read `STAGE_DIR/manifest.jsonl` (records with clip_id, audio_path relative to the stage folder, modality,
duration_s, sample_rate, events, facts, layers, caption) and the stages' JSONL files. Widgets are built and updated
without a display, so tests drive them by setting filter values and calling `show(clip_id)`.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import ipywidgets as widgets
import soundfile

from cogito_lib import layout
from cogito_lib.env import headless
from cogito_lib.io import read_jsonl
from cogito_lib.plots import LAYERS, modality_order, spectrogram_figure

ALL = "(all)"  # filter value that keeps every clip
MANIFEST_NAME = "manifest.jsonl"


def load_manifest(stage_dir: str | Path) -> list[dict]:
    """The clip records of a stage folder; raises FileNotFoundError naming the missing manifest."""
    manifest_path = Path(stage_dir) / MANIFEST_NAME
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} not found: run the data-collection stage (notebook 02) first")
    return read_jsonl(manifest_path)


def audio_path_of(stage_dir: str | Path, record: dict) -> Path:
    """A clip's wav path: `audio_path` is relative to the stage folder unless absolute."""
    return Path(stage_dir) / record["audio_path"]


def _message_html(text: str, color: str = "#b00020") -> str:
    return f'<p style="color:{color}">{html.escape(text)}</p>'


def _message(text: str, color: str = "#b00020") -> widgets.HTML:
    return widgets.HTML(_message_html(text, color))


def audio_html(wav_path: str | Path) -> str:
    """An HTML audio player with the wav embedded (plays offline, in a saved notebook and in its HTML export), on a
    line of its own, or a message naming the missing file. The `src` attribute sits on `<audio>` itself: JupyterLab's sanitizer keeps it
    there in untrusted notebooks, where it would strip a `<source src>`."""
    wav_path = Path(wav_path)
    if not wav_path.is_file():
        return _message_html(f"audio file missing: {wav_path}")
    data = base64.b64encode(wav_path.read_bytes()).decode("ascii")
    return f'<div><audio controls preload="none" src="data:audio/wav;base64,{data}"></audio></div>'


def image_html(png: bytes, max_width: int = 720) -> str:
    """A PNG embedded as an HTML image."""
    data = base64.b64encode(png).decode("ascii")
    return f'<div><img src="data:image/png;base64,{data}" style="max-width:{max_width}px;width:100%"></div>'


def view_bundle(widget: widgets.Widget | None, static_html: str, summary: str, **kwargs) -> dict:
    """The output of a view: the widget (live sessions only) beside its static twin and a one-line text form."""
    if widget is None or headless():
        return {"text/plain": summary, "text/html": static_html}
    bundle = dict(widget._repr_mimebundle_(**kwargs))
    bundle.update({"text/plain": summary, "text/html": static_html})
    return bundle


class StaticView:
    """A view whose widget is built on first use (never in a headless run) and whose static twin is HTML.

    `build` returns the widget; `static` returns the twin's HTML; `summary` is the text form of the output."""

    def __init__(self, build: Callable[[], widgets.Widget], static: Callable[[], str], summary: str):
        self._build, self._static, self.summary = build, static, summary
        self._widget: widgets.Widget | None = None

    @property
    def widget(self) -> widgets.Widget:
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def static_html(self) -> str:
        return self._static()

    def _repr_mimebundle_(self, **kwargs):
        return view_bundle(None if headless() else self.widget, self.static_html(), self.summary, **kwargs)

    def __repr__(self) -> str:
        return self.summary


def audio_player(stage_dir: str | Path, record: dict) -> widgets.Widget:
    """An Audio widget for the clip's wav, or a message naming the missing file."""
    wav_path = audio_path_of(stage_dir, record)
    if not wav_path.is_file():
        return _message(f"audio file missing: {wav_path}")
    return widgets.Audio(value=wav_path.read_bytes(), format="wav", autoplay=False, loop=False, controls=True)


def spectrogram_png(stage_dir: str | Path, record: dict) -> bytes:
    """The clip's log-mel spectrogram with its events, as PNG bytes."""
    waveform, sample_rate = soundfile.read(audio_path_of(stage_dir, record), dtype="float32", always_2d=False)
    title = f"{record['clip_id']} · {record.get('modality', '?')}"
    figure = spectrogram_figure(waveform, sample_rate, events=record.get("events") or [], title=title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _table(header: list[str], rows: list[list], empty: str) -> str:
    if not rows:
        return f"<p><i>{html.escape(empty)}</i></p>"
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{html.escape(str(cell))}</td>" for cell in row)
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def metadata_html(record: dict) -> str:
    """Caption, modality, layers, events table and facts of one clip, as HTML."""
    events = sorted(record.get("events") or [], key=lambda e: e.get("onset_s", 0.0))
    event_rows = [[e.get("label", ""), f"{e.get('onset_s', 0):.2f}", f"{e.get('offset_s', 0):.2f}",
                   e.get("source", ""), e.get("kind", "")] for e in events]
    fact_rows = [[kind, value if isinstance(value, str) else json.dumps(value)]
                 for kind, value in (record.get("facts") or {}).items()]
    summary = (f"<b>{html.escape(str(record['clip_id']))}</b> · {html.escape(str(record.get('modality', '?')))}"
               f" · {record.get('duration_s', 0):.2f} s · {record.get('sample_rate', '?')} Hz"
               f" · layers: {html.escape(', '.join(record.get('layers') or []) or '-')}")
    return (f"<p>{summary}</p><p><b>Caption:</b> {html.escape(str(record.get('caption', '')))}</p>"
            f"<h4>Events</h4>{_table(['label', 'onset (s)', 'offset (s)', 'source', 'kind'], event_rows, 'no events')}"
            f"<h4>Facts</h4>{_table(['kind', 'value'], fact_rows, 'no facts')}")


class ClipBrowser:
    """Browse a stage's clips: filter by modality and MMAR layer, pick a clip, listen, see its spectrogram and
    metadata. `ClipBrowser(run_dir / "02-data-collection")` as a cell's last line shows it. Its static twin shows
    `static_clips` clips spread over the modality classes, each with its player, spectrogram and metadata."""

    def __init__(self, stage_dir: str | Path, manifest: list[dict] | None = None, *, static_clips: int = 3):
        self.stage_dir = Path(stage_dir)
        self.clips = list(manifest) if manifest is not None else load_manifest(self.stage_dir)
        self.static_clips = static_clips
        self._clip_by_id = {record["clip_id"]: record for record in self.clips}
        self._png_by_clip_id: dict[str, bytes] = {}
        self._quiet = False  # set while the browser itself rewrites options, so observers do not re-render
        self._built = False
        self.current_clip_id: str | None = None
        if not headless():
            self._build()

    def __getattr__(self, name: str):
        # the widgets (filters, selector, panel) exist once built: a headless run builds them only when asked
        if name.startswith("_") or self.__dict__.get("_built", True):
            raise AttributeError(name)
        self._build()
        return getattr(self, name)

    def _build(self) -> None:
        self._built = True
        modalities = modality_order(r["modality"] for r in self.clips)
        layers = [*LAYERS, *sorted({l for r in self.clips for l in r.get("layers") or []} - set(LAYERS))]
        self.modality_filter = widgets.Dropdown(description="modality", options=self._counted(
            modalities, lambda record, modality: record["modality"] == modality), value=ALL)
        self.layer_filter = widgets.Dropdown(description="layer", options=self._counted(
            layers, lambda record, layer: layer in (record.get("layers") or [])), value=ALL)
        self.clip_selector = widgets.Dropdown(description="clip", layout=widgets.Layout(width="480px"))
        self.previous_button = widgets.Button(description="◀", layout=widgets.Layout(width="40px"),
                                              tooltip="previous clip")
        self.next_button = widgets.Button(description="▶", layout=widgets.Layout(width="40px"), tooltip="next clip")
        self.count_label = widgets.HTML()
        self.clip_panel = widgets.VBox()
        self.widget = widgets.VBox([
            widgets.HBox([self.modality_filter, self.layer_filter]),
            widgets.HBox([self.clip_selector, self.previous_button, self.next_button, self.count_label]),
            self.clip_panel,
        ])

        self.modality_filter.observe(self._on_filter_change, names="value")
        self.layer_filter.observe(self._on_filter_change, names="value")
        self.clip_selector.observe(self._on_clip_change, names="value")
        self.previous_button.on_click(lambda _: self._step(-1))
        self.next_button.on_click(lambda _: self._step(+1))
        self._refresh()

    def _counted(self, names: list[str], matches) -> list[tuple[str, str]]:
        """Dropdown options `name (count)`, with ALL first; names with no clips stay listed so gaps are visible."""
        counted = [(f"{name} ({sum(matches(r, name) for r in self.clips)})", name) for name in names]
        return [(f"{ALL} ({len(self.clips)})", ALL), *counted]

    def filtered(self) -> list[dict]:
        """The clip records matching the current modality and layer filters, in manifest order."""
        modality, layer = self.modality_filter.value, self.layer_filter.value
        return [r for r in self.clips
                if modality in (ALL, r["modality"]) and (layer == ALL or layer in (r.get("layers") or []))]

    def show(self, clip_id: str) -> "ClipBrowser":
        """Select and render one clip (clearing filters that would hide it); returns the browser for display."""
        if clip_id not in self._clip_by_id:
            raise KeyError(f"clip_id {clip_id!r} is not in {self.stage_dir / MANIFEST_NAME}")
        if clip_id not in {r["clip_id"] for r in self.filtered()}:
            self._quiet = True
            self.modality_filter.value = ALL
            self.layer_filter.value = ALL
            self._quiet = False
            self._refresh(select=clip_id)
        elif self.clip_selector.value != clip_id:
            self.clip_selector.value = clip_id  # observer renders
        return self

    def _refresh(self, select: str | None = None) -> None:
        """Rebuild the clip options from the filters, then render the selected clip or the empty-filter message."""
        clips = self.filtered()
        self._quiet = True
        self.clip_selector.options = [(f"{r['clip_id']} · {r['modality']} · {str(r.get('caption', ''))[:50]}",
                                       r["clip_id"]) for r in clips]
        if clips:
            self.clip_selector.value = select if select in {r["clip_id"] for r in clips} else clips[0]["clip_id"]
        self._quiet = False
        self.count_label.value = f"{len(clips)} of {len(self.clips)} clips"
        if clips:
            self._render(self.clip_selector.value)
        else:
            self.current_clip_id = None
            self.clip_panel.children = [_message(
                f"No clips match modality={self.modality_filter.value} and layer={self.layer_filter.value}; "
                f"set one of the filters back to {ALL}." if self.clips else
                f"{self.stage_dir / MANIFEST_NAME} holds no clips.", color="#555555")]

    def _spectrogram(self, record: dict) -> bytes:
        if record["clip_id"] not in self._png_by_clip_id:
            self._png_by_clip_id[record["clip_id"]] = spectrogram_png(self.stage_dir, record)
        return self._png_by_clip_id[record["clip_id"]]

    def _render(self, clip_id: str) -> None:
        record = self._clip_by_id[clip_id]
        self.current_clip_id = clip_id
        player = audio_player(self.stage_dir, record)
        panels: list[widgets.Widget] = [player]
        if isinstance(player, widgets.Audio):  # no wav, no spectrogram: the message already says why
            panels.append(widgets.Image(value=self._spectrogram(record), format="png",
                                        layout=widgets.Layout(max_width="720px")))
        panels.append(widgets.HTML(metadata_html(record)))
        self.clip_panel.children = panels

    def _on_filter_change(self, change: dict) -> None:
        if not self._quiet:
            self._refresh(select=self.current_clip_id)

    def _on_clip_change(self, change: dict) -> None:
        if not self._quiet and change["new"] is not None:
            self._render(change["new"])

    def _step(self, offset: int) -> None:
        clip_ids = [value for _, value in self.clip_selector.options]
        if clip_ids and self.current_clip_id in clip_ids:
            self.show(clip_ids[(clip_ids.index(self.current_clip_id) + offset) % len(clip_ids)])

    def panel_text(self) -> str:
        """All HTML text in the clip panel (what a reader sees besides the player and image); handy in tests."""
        return "\n".join(child.value for child in self.clip_panel.children if isinstance(child, widgets.HTML))

    def clip_html(self, record: dict) -> str:
        """One clip in full, as static HTML: player, spectrogram with its events, metadata."""
        wav = audio_path_of(self.stage_dir, record)
        parts = [audio_html(wav)]
        if wav.is_file():
            parts.append(image_html(self._spectrogram(record)))
        parts.append(metadata_html(record))
        return "".join(parts)

    def summary(self) -> str:
        counts = {m: sum(r["modality"] == m for r in self.clips) for m in modality_order(r["modality"]
                                                                                         for r in self.clips)}
        return (f"{len(self.clips)} clips in {self.stage_dir.name}: "
                + ", ".join(f"{m} {n}" for m, n in counts.items() if n))

    def static_html(self) -> str:
        """The browser's static twin: the pool's counts, then `static_clips` clips across the modality classes."""
        chosen = _spread_over_modalities(self.clips, self.static_clips)
        if not chosen:
            return _message_html(f"{self.stage_dir / MANIFEST_NAME} holds no clips.", color="#555555")
        intro = (f"<p><b>{html.escape(self.summary())}</b>. {len(chosen)} of them below, one per modality class; "
                 "run the notebook in Jupyter to browse them all by modality and MMAR layer.</p>")
        return intro + "".join(f"<div style='border-top:1px solid #ccc;padding:6px 0'>{self.clip_html(r)}</div>"
                               for r in chosen)

    def display(self) -> None:
        from IPython.display import display

        display(self)

    def _repr_mimebundle_(self, **kwargs):
        return view_bundle(None if headless() else self.widget, self.static_html(), self.summary(), **kwargs)


def _spread_over_modalities(clips: list[dict], n: int) -> list[dict]:
    """Up to n clips taken round-robin over modality classes, so a short listen covers the variety."""
    by_modality: dict[str, list[dict]] = {}
    for record in clips:
        by_modality.setdefault(record["modality"], []).append(record)
    queues = [by_modality[m] for m in modality_order(by_modality) if m in by_modality]
    chosen: list[dict] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


def _player(wav_path: Path) -> widgets.Widget:
    if not wav_path.is_file():
        return _message(f"audio file missing: {wav_path}")
    return widgets.Audio(value=wav_path.read_bytes(), format="wav", autoplay=False, loop=False, controls=True)


def item_list(items: Sequence[tuple[str, Path | None, str]], *, empty: str, summary: str) -> StaticView:
    """A view of a few items, each a header (HTML), a clip (a wav path, or None) and a body (HTML), one under the
    other; the widget has an audio player where the twin has an embedded `<audio>`."""
    items = list(items)

    def build() -> widgets.VBox:
        rows = [widgets.VBox([widgets.HTML(head), *([_player(Path(wav))] if wav else []),
                              *([widgets.HTML(body)] if body else [])]) for head, wav, body in items]
        return widgets.VBox(rows or [_message(empty, color="#555555")])

    def static() -> str:
        if not items:
            return _message_html(empty, color="#555555")
        return "".join(f"<div style='border-top:1px solid #ccc;padding:6px 0'><div>{head}</div>"
                       f"{audio_html(wav) if wav else ''}{body}</div>" for head, wav, body in items)

    return StaticView(build, static, summary)


def listen(stage_dir: str | Path, clip_ids: list[str] | None = None, n: int = 3) -> StaticView:
    """A few clips, each a caption and an audio player; without clip_ids, n clips across modalities."""
    clips = load_manifest(stage_dir)
    if clip_ids is None:
        chosen = _spread_over_modalities(clips, n)
    else:
        clip_by_id = {record["clip_id"]: record for record in clips}
        unknown = [clip_id for clip_id in clip_ids if clip_id not in clip_by_id]
        if unknown:
            raise KeyError(f"clip_ids {unknown} are not in {Path(stage_dir) / MANIFEST_NAME}")
        chosen = [clip_by_id[clip_id] for clip_id in clip_ids]
    items = [(f"<b>{html.escape(str(r['clip_id']))}</b> · {html.escape(str(r['modality']))} — "
              f"{html.escape(str(r.get('caption', '')))}", audio_path_of(stage_dir, r), "") for r in chosen]
    return item_list(items, empty=f"{Path(stage_dir) / MANIFEST_NAME} holds no clips.",
                     summary=f"{len(items)} clips: " + ", ".join(str(r["clip_id"]) for r in chosen))


def reasoning_examples(rows: list[dict], n: int = 4) -> StaticView:
    """A few answered questions: audio player, question and choices, the model's reasoning and answer, verdict.

    Each row needs `audio_file`, `question`, `choices`, `answer`, `thinking`, `answer_prediction`; `pass@1` and
    `judge_pass@1` (0/1) are shown when present."""
    items = []
    for row in rows[:n]:
        verdict = ""
        if "pass@1" in row:
            verdict = ("correct" if row["pass@1"] else "wrong") + (
                ", reasoning accepted by the judge" if row.get("judge_pass@1") else ", reasoning rejected")
        header = (f"<b>{html.escape(row['question'])}</b> choices: {html.escape(' | '.join(row['choices']))}"
                  f" · gold: <b>{html.escape(row['answer'])}</b>")
        reasoning = (f"<pre style='white-space:pre-wrap'>&lt;think&gt;\n{html.escape(row['thinking'])}\n&lt;/think&gt;"
                     f"\n{html.escape(row['answer_prediction'])}</pre><i>{html.escape(verdict)}</i>")
        items.append((header, Path(row["audio_file"]), reasoning))
    return item_list(items, empty="no examples to show", summary=f"{len(items)} reasoning examples")


def question_examples(questions: Sequence[dict], run_dir: str | Path, n: int = 4) -> StaticView:
    """A few of the annotator's questions, each with its clip's audio, choices, label, tier, skill and seeds (no
    reasoning: stage 2 writes labels only)."""
    items = []
    for q in list(questions)[:n]:
        header = (f"<b>{html.escape(q['question'])}</b><br>choices: {html.escape(' | '.join(q['choices']))} · "
                  f"label: <b>{html.escape(q['answer'])}</b><br><small>{html.escape(q['clip_id'])} · "
                  f"{html.escape(q['modality'])} · {html.escape(q['category'])} / {html.escape(q['sub-category'])}"
                  f" · {html.escape(str(q['tier']))} · skill {html.escape(str(q['skill']))}"
                  f" · seeds {html.escape(', '.join(q.get('seed_ids') or []))}</small>")
        items.append((header, Path(run_dir) / q["audio_path"], ""))
    return item_list(items, empty="no questions to show", summary=f"{len(items)} questions")


def load_pipeline(run_dir: str | Path) -> dict:
    """Everything stages 1-4 wrote about each clip: questions (03), samples (04) and verdicts (05), by clip id.
    Stages not yet run are simply empty."""
    run_dir = Path(run_dir)
    questions = read_jsonl(layout.path(run_dir, "qa"))
    samples = read_jsonl(layout.path(run_dir, "cot"))
    verdicts = {r["id"]: "kept" for r in read_jsonl(layout.path(run_dir, "survivors"))}
    for r in read_jsonl(layout.path(run_dir, "rejected")):
        if "id" in r:
            verdicts.setdefault(r["id"], f"rejected: {r.get('reason', '?')}" + (
                f" ({r['detail']})" if r.get("detail") else ""))
    by_clip: dict[str, dict] = {}
    for q in questions:
        by_clip.setdefault(q["clip_id"], {"questions": [], "samples": {}})["questions"].append(q)
    for s in samples:
        if s["clip_id"] in by_clip:
            by_clip[s["clip_id"]]["samples"].setdefault(s["question_id"], []).append(s)
    return {"by_clip": by_clip, "verdicts": verdicts}


def questions_html(questions: list[dict], samples: dict[str, list[dict]], verdicts: dict[str, str]) -> str:
    """A clip's questions, each with its K reasoning samples and the auditor's verdict on each, as HTML."""
    parts = []
    for q in questions:
        parts.append(f"<h4>{html.escape(q['question'])}</h4><p>choices: {html.escape(' | '.join(q['choices']))}"
                     f" · label: <b>{html.escape(q['answer'])}</b> · {html.escape(q.get('tier', ''))}"
                     f" / {html.escape(str(q.get('skill', '')))} · {html.escape(q.get('category', ''))}</p>")
        rows = samples.get(q["id"], [])
        if not rows:
            parts.append("<p><i>no samples yet: run notebook 04</i></p>")
        for s in sorted(rows, key=lambda r: r["sample_index"]):
            verdict = verdicts.get(s["id"], "not audited yet: run notebook 05")
            color = "#1b7f3b" if verdict == "kept" else "#b00020" if verdict.startswith("rejected") else "#555"
            parts.append(f"<div style='margin-left:1em'><b>sample {s['sample_index']}</b> → answer "
                         f"<b>{html.escape(s['answer_prediction'] or '(none)')}</b> · "
                         f"<span style='color:{color}'>{html.escape(verdict)}</span>"
                         f"<pre style='white-space:pre-wrap;margin:2px 0'>{html.escape(s['thinking'])}</pre></div>")
    return "".join(parts) or "<p><i>no questions for this clip</i></p>"


class PipelineBrowser:
    """Browse Cogito-pipe clip by clip: listen, see the spectrogram, the annotator's questions, the thinker's K
    samples and the auditor's verdict on each. `PipelineBrowser(run_dir)` as a cell's last line shows it. Its static
    twin shows `static_clips` clips, those whose samples the auditor both kept and rejected first."""

    def __init__(self, run_dir: str | Path, *, static_clips: int = 2):
        self.run_dir = Path(run_dir)
        self.stage_dir = self.run_dir / layout.COLLECT
        self.clips = {c["clip_id"]: c for c in load_manifest(self.stage_dir)}
        self.data = load_pipeline(self.run_dir)
        self.clip_ids = [c for c in self.clips if c in self.data["by_clip"]]
        self.static_clips = static_clips
        self._widget: widgets.Widget | None = None

    @property
    def widget(self) -> widgets.Widget:
        if self._widget is None:
            self.clip_selector = widgets.Dropdown(description="clip", options=self.clip_ids,
                                                  layout=widgets.Layout(width="480px"))
            self.panel = widgets.VBox()
            self._widget = widgets.VBox([self.clip_selector, self.panel])
            self.clip_selector.observe(lambda change: self.show(change["new"]), names="value")
            if self.clip_ids:
                self.show(self.clip_ids[0])
            else:
                self.panel.children = [_message("no clip has questions yet: run notebook 03", color="#555555")]
        return self._widget

    def panel_html(self, clip_id: str) -> str:
        entry = self.data["by_clip"].get(clip_id, {"questions": [], "samples": {}})
        return (f"<p>{html.escape(self.clips[clip_id].get('caption', ''))}</p>"
                + questions_html(entry["questions"], entry["samples"], self.data["verdicts"]))

    def show(self, clip_id: str) -> "PipelineBrowser":
        record = self.clips[clip_id]
        self.widget  # noqa: B018  (builds the selector and panel)
        children = [audio_player(self.stage_dir, record)]
        if audio_path_of(self.stage_dir, record).is_file():
            children.append(widgets.Image(value=spectrogram_png(self.stage_dir, record), format="png"))
        children.append(widgets.HTML(self.panel_html(clip_id)))
        self.panel.children = children
        if self.clip_selector.value != clip_id:
            self.clip_selector.value = clip_id
        return self

    def _verdict_mix(self, clip_id: str) -> int:
        """0 when the auditor kept some samples of this clip and rejected others, 1 for one kind, 2 for none."""
        kinds = {("kept" if self.data["verdicts"].get(s["id"]) == "kept" else "rejected")
                 for samples in self.data["by_clip"][clip_id]["samples"].values() for s in samples
                 if s["id"] in self.data["verdicts"]}
        return 2 - len(kinds)

    def summary(self) -> str:
        return f"{len(self.clip_ids)} clips with questions in {self.run_dir.name}"

    def static_html(self) -> str:
        if not self.clip_ids:
            return _message_html("no clip has questions yet: run notebook 03", color="#555555")
        chosen = sorted(self.clip_ids, key=self._verdict_mix)[:self.static_clips]
        parts = [f"<p><b>{html.escape(self.summary())}</b>. {len(chosen)} of them below; run the notebook in Jupyter "
                 "to pick any clip.</p>"]
        for clip_id in chosen:
            record = self.clips[clip_id]
            wav = audio_path_of(self.stage_dir, record)
            parts.append(f"<div style='border-top:1px solid #ccc;padding:6px 0'><b>{html.escape(clip_id)}</b> · "
                         f"{html.escape(str(record.get('modality', '')))}<br>{audio_html(wav)}"
                         + (image_html(spectrogram_png(self.stage_dir, record)) if wav.is_file() else "")
                         + self.panel_html(clip_id) + "</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, **kwargs):
        return view_bundle(None if headless() else self.widget, self.static_html(), self.summary(), **kwargs)


def example_html(row: Mapping) -> str:
    """One item with both models' reasoning side by side (and the gold reasoning when the benchmark has it)."""
    def trace(title, thinking, answer):
        return (f"<div style='flex:1;min-width:260px'><b>{html.escape(title)}</b><pre style='white-space:pre-wrap'>"
                f"&lt;think&gt;\n{html.escape(thinking)}\n&lt;/think&gt;\n{html.escape(answer)}</pre></div>")

    head = (f"<p><b>{html.escape(row['question'])}</b><br>choices: {html.escape(' | '.join(row['choices']))}"
            f" &middot; gold: <b>{html.escape(row['answer'])}</b> &middot; {html.escape(row['modality'])}, "
            f"{html.escape(row['category'])}{', ' + html.escape(row['tier']) if row.get('tier') else ''}</p>")
    panels = [trace(f"{row['model']} (right)", row["model_thinking"], row["model_answer"]),
              trace(f"{row['reference']} (wrong)", row["reference_thinking"], row["reference_answer"])]
    if row.get("gold_thinking"):
        panels.append(trace("gold reasoning (benchmark)", row["gold_thinking"], row["answer"]))
    return head + "<div style='display:flex;gap:12px'>" + "".join(panels) + "</div>"


def win_browser(evaluation, reference: str = "base", *, static_items: int = 3) -> StaticView:
    """A browser of the items a fine-tuned model got right and `reference` got wrong: pick a model and an item,
    listen, and read both reasoning traces. Its static twin counts every model's wins and shows `static_items` of
    the headline model's (the last self-distillation round when there is one)."""
    names = [n for n in evaluation.scores if n != reference]
    if not names:
        text = "Only the base was evaluated: train adapters in notebook 06 to browse their wins."
        return StaticView(lambda: widgets.HTML(f"<i>{text}</i>"), lambda: f"<p><i>{text}</i></p>", text)
    wins = {name: evaluation.wins(name, reference) for name in names}

    def build() -> widgets.VBox:
        model_box = widgets.Dropdown(options=names, description="model")
        item_box = widgets.Dropdown(description="item", layout=widgets.Layout(width="70%"))
        panel = widgets.VBox()
        rows: dict[str, dict] = {}

        def show(_=None):
            row = rows.get(item_box.value)
            if row is None:
                panel.children = [widgets.HTML(f"<i>{model_box.value} got no item right that {reference} got "
                                               "wrong.</i>")]
                return
            panel.children = [_player(Path(row["audio_file"])), widgets.HTML(example_html(row))]

        def pick_model(_=None):
            rows.clear()
            rows.update({r["id"]: r for r in wins[model_box.value]})
            item_box.options = [(f"{r['question']} [{r['id']}]", key) for key, r in rows.items()]
            item_box.value = next(iter(rows), None)
            show()

        model_box.observe(pick_model, names="value")
        item_box.observe(show, names="value")
        pick_model()
        return widgets.VBox([widgets.HBox([model_box, item_box]), panel])

    def static() -> str:
        shown = layout.headline_model(names) if layout.headline_model(names) in names else names[0]
        counts = _table(["model", f"items right where {reference} was wrong"],
                        [[name, len(rows)] for name, rows in wins.items()], "no models")
        parts = [counts, f"<p>{min(static_items, len(wins[shown]))} of <b>{html.escape(shown)}</b>'s wins below; "
                         "run the notebook in Jupyter to browse every model's.</p>"]
        for row in wins[shown][:static_items]:
            parts.append(f"<div style='border-top:1px solid #ccc;padding:6px 0'>{audio_html(row['audio_file'])}"
                         f"{example_html(row)}</div>")
        return "".join(parts)

    summary = "wins over " + reference + ": " + ", ".join(f"{name} {len(rows)}" for name, rows in wins.items())
    return StaticView(build, static, summary)
