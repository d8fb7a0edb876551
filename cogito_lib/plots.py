"""Seaborn plot helpers for the stage notebooks: what a stage's manifest holds, and what a clip sounds like.

Every helper takes manifest records (a list of dicts or a DataFrame), returns a matplotlib Figure and saves a PNG
when `save_as` is given. Figures are built without pyplot, so a notebook shows each exactly once: make the call
the cell's last expression, or pass the figure to `display()`. Helpers that draw one panel also accept `ax=` so
`plot_stage_overview` can compose them.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import matplotlib
import matplotlib.colors
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cogito_lib.world import LAYERS, MODALITIES

UNMAPPED_LAYER = "unmapped"  # fact kinds that `fact_layers` does not name
LAYER_COLORS = {**dict(zip(LAYERS, sns.color_palette("colorblind", len(LAYERS)).as_hex())),
                UNMAPPED_LAYER: "#9e9e9e"}
BAR_COLOR = sns.color_palette("colorblind")[0]
DPI = 120


def _enable_notebook_display() -> None:
    """Let a notebook render our pyplot-free Figures as PNG. The inline backend registers IPython's Figure
    formatter when its module is imported, which only pyplot figure creation would otherwise trigger."""
    if "matplotlib_inline" in matplotlib.get_backend():
        import matplotlib_inline.backend_inline  # noqa: F401  (imported for its side effect)


_enable_notebook_display()


def use_theme() -> None:
    """Apply the kit's one plot theme (every helper calls it, so figures look alike across notebooks)."""
    sns.set_theme(style="whitegrid", context="notebook")


def _records(manifest) -> list[dict]:
    if isinstance(manifest, pd.DataFrame):
        return manifest.to_dict(orient="records")
    return list(manifest)


def modality_order(modalities: Iterable[str]) -> list[str]:
    """The 7 MMAR modality classes in their fixed order, then any unknown ones seen (so nothing is hidden)."""
    unknown = sorted({m for m in modalities if m not in MODALITIES})
    return [*MODALITIES, *unknown]


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    use_theme()
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()


def _finish(figure: Figure, save_as: str | Path | None, dpi: int = DPI) -> Figure:
    if save_as is not None:
        save_figure(figure, save_as, dpi=dpi)
    return figure


def save_figure(figure: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write `figure` as a PNG atomically (a killed writer never leaves half an image under the final name)."""
    import io

    from cogito_lib.io import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def _label_bars(ax: Axes, count_axis: str) -> None:
    """Write each bar's count on it; counts are whole numbers, so the count axis gets integer ticks."""
    for container in ax.containers:
        ax.bar_label(container, fmt="%d", padding=2, fontsize="small")
    getattr(ax, f"{count_axis}axis").set_major_locator(MaxNLocator(integer=True))


def plot_clips_by_modality(manifest, save_as: str | Path | None = None, *, ax: Axes | None = None) -> Figure:
    """Bar chart of clip counts over the 7 MMAR modality classes (zero bars for classes with no clips)."""
    records = _records(manifest)
    counts = Counter(r["modality"] for r in records)
    order = modality_order(counts)
    figure, ax = _new_axes(ax, (7.5, 4))
    sns.barplot(x=order, y=[counts.get(m, 0) for m in order], order=order, color=BAR_COLOR, ax=ax)
    _label_bars(ax, "y")
    ax.set(xlabel="modality", ylabel="clips", title=f"Clips by modality (n={len(records)})")
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return _finish(figure, save_as)


def fact_kind_counts(manifest, fact_layers: Mapping[str, object] | None = None) -> pd.DataFrame:
    """Clips carrying each fact kind, with the kind's MMAR layer; sorted by layer, then by count."""
    counts = Counter(kind for r in _records(manifest) for kind in (r.get("facts") or {}))
    # values may be layer names or objects with a `.layer` (cogito_lib.world.facts.FACT_KINDS works as is)
    fact_layers = {kind: getattr(layer, "layer", layer) for kind, layer in (fact_layers or {}).items()}
    table = pd.DataFrame({"fact_kind": list(counts), "clips": list(counts.values())}, columns=["fact_kind", "clips"])
    table["layer"] = [fact_layers.get(kind, UNMAPPED_LAYER) for kind in table["fact_kind"]]
    layer_rank = {layer: rank for rank, layer in enumerate([*LAYERS, UNMAPPED_LAYER])}
    table["layer_rank"] = table["layer"].map(lambda layer: layer_rank.get(layer, len(layer_rank)))
    table = table.sort_values(["layer_rank", "clips", "fact_kind"], ascending=[True, False, True])
    return table.drop(columns="layer_rank").reset_index(drop=True)


def plot_clips_by_fact_kind(manifest, fact_layers: Mapping[str, object] | None = None,
                            save_as: str | Path | None = None, *, ax: Axes | None = None) -> Figure:
    """Horizontal bars: clips carrying each fact kind, coloured by MMAR layer when `fact_layers` maps kind -> layer."""
    table = fact_kind_counts(manifest, fact_layers)
    figure, ax = _new_axes(ax, (7, max(2.5, 0.3 * len(table) + 1.2)))
    if table.empty:
        ax.text(0.5, 0.5, "no facts in this manifest", ha="center", va="center", transform=ax.transAxes)
    elif fact_layers:
        layers = list(dict.fromkeys(table["layer"]))
        palette = {layer: LAYER_COLORS.get(layer, LAYER_COLORS[UNMAPPED_LAYER]) for layer in layers}
        sns.barplot(data=table, x="clips", y="fact_kind", hue="layer", hue_order=layers, palette=palette,
                    dodge=False, ax=ax)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="MMAR layer", frameon=False)
    else:
        sns.barplot(data=table, x="clips", y="fact_kind", color=BAR_COLOR, ax=ax)
    _label_bars(ax, "x")
    ax.set(xlabel="clips carrying the fact", ylabel="fact kind", title="Clips by fact kind")
    return _finish(figure, save_as)


def plot_durations(manifest, save_as: str | Path | None = None, *, ax: Axes | None = None) -> Figure:
    """Clip durations per modality: a box per modality class with every clip drawn as a point."""
    table = pd.DataFrame(_records(manifest))
    figure, ax = _new_axes(ax, (7, 4))
    if table.empty:
        ax.text(0.5, 0.5, "no clips in this manifest", ha="center", va="center", transform=ax.transAxes)
    else:
        order = [m for m in modality_order(table["modality"]) if m in set(table["modality"])]
        with warnings.catch_warnings():  # seaborn 0.13.2 passes matplotlib 3.11's deprecated `vert`; harmless here
            warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
            sns.boxplot(data=table, x="duration_s", y="modality", order=order, color="#dddddd", fliersize=0, ax=ax)
        sns.stripplot(data=table, x="duration_s", y="modality", order=order, color=BAR_COLOR, size=4,
                      alpha=0.7, ax=ax)
    ax.set(xlabel="duration (s)", ylabel="modality", title="Clip durations")
    return _finish(figure, save_as)


def plot_stage_overview(manifest, fact_layers: Mapping[str, object] | None = None,
                        save_as: str | Path | None = None) -> Figure:
    """One figure with the three manifest panels: clips by modality, by fact kind, durations."""
    use_theme()
    num_fact_kinds = len(fact_kind_counts(manifest))
    figure = Figure(figsize=(18, max(4.5, 0.3 * num_fact_kinds + 1.5)), layout="constrained")
    modality_ax, fact_ax, duration_ax = figure.subplots(1, 3)
    plot_clips_by_modality(manifest, ax=modality_ax)
    plot_clips_by_fact_kind(manifest, fact_layers, ax=fact_ax)
    plot_durations(manifest, ax=duration_ax)
    return _finish(figure, save_as)


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """A float32 1-D waveform; (channels, samples) or soundfile's (samples, channels) is averaged over channels."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=0 if waveform.shape[0] < waveform.shape[1] else 1)
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(f"waveform must be a non-empty 1-D or 2-D array, got shape {waveform.shape}")
    return waveform


def log_mel(waveform: np.ndarray, sample_rate: int, num_mels: int = 64, hop_s: float = 0.010,
            window_s: float = 0.025) -> np.ndarray:
    """Log-mel spectrogram in dB, shape (num_mels, frames); a multi-channel waveform is averaged to mono."""
    import torch
    import torchaudio

    waveform = to_mono(waveform)
    n_fft = int(round(window_s * sample_rate))
    if waveform.size < n_fft:  # centred frames reflect-pad by n_fft/2, which needs at least that many samples
        waveform = np.pad(waveform, (0, n_fft - waveform.size))
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, n_mels=num_mels,
                                               hop_length=max(1, int(round(hop_s * sample_rate))))
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0)
    with torch.no_grad():
        return to_db(mel(torch.from_numpy(waveform))).numpy()


def spectrogram_figure(waveform: np.ndarray, sample_rate: int, events: list[dict] | None = None, title: str = "",
                       save_as: str | Path | None = None) -> Figure:
    """Log-mel spectrogram (64 mels, dB) with each event's onset..offset drawn as a labelled span."""
    use_theme()
    waveform = to_mono(waveform)
    spectrogram_db = log_mel(waveform, sample_rate)
    duration_s = waveform.size / sample_rate
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    ax = figure.add_subplot()
    ax.grid(False)
    image = ax.imshow(spectrogram_db, origin="lower", aspect="auto", cmap="magma",
                      extent=(0.0, duration_s, 0, spectrogram_db.shape[0]))
    figure.colorbar(image, ax=ax, label="dB", pad=0.01)
    labels = list(dict.fromkeys(e["label"] for e in events or []))
    colors = dict(zip(labels, sns.color_palette("husl", max(1, len(labels))).as_hex()))
    num_rows = 3  # stagger labels so overlapping events stay readable
    for index, event in enumerate(events or []):
        color = colors[event["label"]]
        ax.axvspan(event["onset_s"], event["offset_s"], facecolor=(*matplotlib.colors.to_rgb(color), 0.15),
                   edgecolor=color, linewidth=2)
        ax.text(event["onset_s"], spectrogram_db.shape[0] * (0.95 - 0.1 * (index % num_rows)), f" {event['label']}",
                color="white", fontsize="small", va="top", clip_on=True,
                bbox={"facecolor": color, "alpha": 0.8, "pad": 1.5, "edgecolor": "none"})
    ax.set(xlim=(0.0, duration_s), xlabel="time (s)", ylabel="mel bin", title=title)
    return _finish(figure, save_as)


def plot_training_curve(logs, save_as: str | Path | None = None, *, title: str = "training loss",
                        smooth: int = 10) -> Figure:
    """Loss per step (raw and a running mean) beside the learning rate, from a trainer's log rows."""
    frame = pd.DataFrame(_records(logs))
    use_theme()
    figure = Figure(figsize=(10, 3.4), layout="constrained")
    loss_ax, lr_ax = figure.subplots(1, 2, width_ratios=[2, 1])
    sns.lineplot(data=frame, x="step", y="loss", ax=loss_ax, alpha=0.35, label="loss")
    frame["running mean"] = frame["loss"].rolling(max(1, smooth), min_periods=1).mean()
    sns.lineplot(data=frame, x="step", y="running mean", ax=loss_ax, label=f"mean of {smooth} steps")
    loss_ax.set(title=title, ylabel="cross-entropy (assistant tokens)")
    sns.lineplot(data=frame, x="step", y="lr", ax=lr_ax, color="grey")
    lr_ax.set(title="learning rate", ylabel="lr")
    return _finish(figure, save_as)


def plot_skill_scores(by_skill: Mapping[str, Mapping[str, float]], save_as: str | Path | None = None, *,
                      metrics: tuple[str, ...] = ("pass@1", "judge_pass@1", "judge_pass@K"),
                      title: str = "per-skill scores on the check set") -> Figure:
    """Grouped bars per skill for each metric (percent), with chance marked per skill."""
    rows = [{"skill": skill, "metric": metric, "percent": scores[metric]}
            for skill, scores in by_skill.items() for metric in metrics]
    frame = pd.DataFrame(rows)
    figure, ax = _new_axes(None, (max(8.0, 0.55 * len(by_skill) * len(metrics) / 1.5), 4.2))
    sns.barplot(data=frame, x="skill", y="percent", hue="metric", ax=ax)
    for i, (skill, scores) in enumerate(by_skill.items()):
        ax.hlines(scores["chance"], i - 0.4, i + 0.4, colors="black", linestyles="dashed", linewidth=1,
                  label="chance" if i == 0 else None)
    ax.set(title=title, ylim=(0, 100), xlabel="")
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish(figure, save_as)


def plot_rates(rates: Mapping[str, float], save_as: str | Path | None = None, *, title: str = "",
               xlabel: str = "", ylabel: str = "percent", as_percent: bool = True) -> Figure:
    """Bars of a {name: rate} mapping (rates in 0..1 shown as percent by default)."""
    frame = pd.DataFrame({"name": list(rates), "value": [100 * v if as_percent else v for v in rates.values()]})
    figure, ax = _new_axes(None, (max(6.0, 0.6 * len(frame) + 2), 3.4))
    if len(frame):
        sns.barplot(data=frame, x="name", y="value", ax=ax, color=sns.color_palette()[0])
        ax.bar_label(ax.containers[0], fmt="%.0f", padding=2, fontsize="small")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, ylim=(0, 100) if as_percent else None)
    ax.tick_params(axis="x", rotation=30)
    return _finish(figure, save_as)


def plot_source_mix(plan, save_as: str | Path | None = None, *, ax: Axes | None = None) -> Figure:
    """Clips per dataset, planned beside obtained, grouped by domain (sound, speech, music).

    `plan` is the `plan` of stage 1's stats.json ({dataset: {title, domain, planned, obtained, ...}}), a list of such
    rows (with a `dataset` key), or `cogito_lib.sources.sampling_plan(profile)` (planned only: no obtained bars)."""
    if isinstance(plan, Mapping):
        rows = [{"dataset": name, **row} for name, row in plan.items()]
    else:
        rows = _records(plan)
    domains = ["sound", "speech", "music"]
    rows = sorted(rows, key=lambda r: (domains.index(r["domain"]) if r.get("domain") in domains else len(domains)))
    long = [{"dataset": f"{r.get('title') or r['dataset']} ({r.get('domain', '?')})", "kind": kind, "clips": r[kind]}
            for r in rows for kind in ("planned", "obtained") if r.get(kind) is not None]
    table = pd.DataFrame(long, columns=["dataset", "kind", "clips"])
    figure, ax = _new_axes(ax, (8, max(3.0, 0.45 * len(rows) + 1.5)))
    if table.empty:
        ax.text(0.5, 0.5, "no sampling plan", ha="center", va="center", transform=ax.transAxes)
    else:
        kinds = [k for k in ("planned", "obtained") if k in set(table["kind"])]
        palette = dict(zip(("planned", "obtained"), sns.color_palette("colorblind", 2).as_hex()))
        sns.barplot(data=table, x="clips", y="dataset", hue="kind", hue_order=kinds, palette=palette, ax=ax)
        _label_bars(ax, "x")
        sns.move_legend(ax, "lower right", title="")

    def shares(kind: str) -> str:
        total = sum(r.get(kind) or 0 for r in rows)
        if not total:
            return "-"
        return " / ".join(f"{d} {100 * sum(r.get(kind) or 0 for r in rows if r.get('domain') == d) / total:.0f}%"
                          for d in domains)

    title = f"Dataset mix: planned {shares('planned')}"
    if any(r.get("obtained") is not None for r in rows):
        title += f"\nobtained {shares('obtained')}"
    ax.set(xlabel="clips", ylabel="", title=title)
    return _finish(figure, save_as)


def plot_training_curves(logs: dict[str, list[dict]], save_as: str | Path | None = None, *, smooth: int = 5):
    """Notebook 06: loss (running mean), learning rate and tokens/s per step for every variant, from the trainer's
    logs (`distill.load_logs`)."""
    rows = [{**r, "variant": name} for name, rows_ in logs.items() for r in rows_]
    frame = pd.DataFrame(rows)
    use_theme()
    figure = Figure(figsize=(13, 3.6), layout="constrained")
    loss_ax, lr_ax, speed_ax = figure.subplots(1, 3, width_ratios=[2, 1, 1])
    if not frame.empty:
        frame["loss (running mean)"] = frame.groupby("variant")["loss"].transform(
            lambda s: s.rolling(max(1, smooth), min_periods=1).mean())
        sns.lineplot(data=frame, x="step", y="loss (running mean)", hue="variant", ax=loss_ax)
        sns.lineplot(data=frame, x="step", y="lr", hue="variant", ax=lr_ax, legend=False)
        sns.lineplot(data=frame, x="step", y="tokens_per_s", hue="variant", ax=speed_ax, legend=False)
    loss_ax.set(title="training loss (assistant tokens)", ylabel="cross-entropy")
    lr_ax.set(title="learning rate", ylabel="lr")
    speed_ax.set(title="throughput", ylabel="supervised tokens / s")
    return _finish(figure, save_as, dpi=110)


def plot_heatmaps(evaluation, save_as: str | Path | None = None):
    """Notebook 07: accuracy by modality x layer, one heatmap per model of an `evaluate.Evaluation` (blank where the
    benchmark has no item)."""
    use_theme()
    names = list(evaluation.scores)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    figure = Figure(figsize=(4.8 * cols, 3.9 * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        table = evaluation.cell_accuracy(name)
        sns.heatmap(table, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".0f", cbar=False,
                    linewidths=0.5)
        ax.set_title(f"{name}: {evaluation.scores[name]['accuracy']['accuracy']:.1f}%")
        ax.grid(False)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel("layer")
        ax.set_ylabel("modality")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    return _finish(figure, save_as)


def plot_gains(evaluation, save_as: str | Path | None = None):
    """Notebook 07: paired accuracy difference to the base (points) per model of an `evaluate.Evaluation`, overall
    and per tier, with 95% intervals."""
    use_theme()
    rows = []
    for name, entry in evaluation.intervals.items():
        for part, ci in (entry.get("vs_reference") or {}).items():
            if part in ("reference", "rubrics") or not ci:
                continue
            rows.append({"model": name, "part": part, "gain": ci["estimate"], "low": ci["low"], "high": ci["high"]})
    figure = Figure(figsize=(max(5.0, 1.6 * max(1, len(evaluation.scores) - 1) + 2), 3.8), layout="constrained")
    ax = figure.subplots()
    if not rows:
        ax.text(0.5, 0.5, "only the base was evaluated: no gains to show\n(train adapters in notebook 06)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _finish(figure, save_as)
    data = pd.DataFrame(rows)
    parts = list(dict.fromkeys(data["part"]))
    sns.barplot(data=data, x="model", y="gain", hue="part", hue_order=parts, ax=ax, errorbar=None)
    models = list(dict.fromkeys(data["model"]))
    width = 0.8 / len(parts)
    for _, r in data.iterrows():
        x = models.index(r["model"]) - 0.4 + width * (parts.index(r["part"]) + 0.5)
        ax.errorbar(x, r["gain"], yerr=[[r["gain"] - r["low"]], [r["high"] - r["gain"]]], color="black",
                    capsize=3, lw=1)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("accuracy vs base (points, 95% CI)")
    ax.set_title(f"gain over the base on {evaluation.benchmark.name}\n(paired item bootstrap)", fontsize=11)
    return _finish(figure, save_as)
