"""The headline across seeds: per-seed summaries pooled into one table, paired differences pooled over seeds
with a stratified bootstrap, and the bars the miniature's headline is judged by."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io import read_json
from ..layout import CONTROLS, EVAL, HEADLINE_MODEL, headline_model
from ..world.skills import TIERS

STAGE = EVAL


def summarise_seeds(run_dirs: Mapping[str, str | Path]) -> dict:
    """The headline across seeds from each run dir's `07-mmar-evaluation/summary.json`: per model, accuracy
    overall and per tier in every seed (with its item-bootstrap interval), mean and standard deviation over
    seeds, and the same for the difference to the base."""
    per_seed = {}
    for seed, run_dir in run_dirs.items():
        path = Path(run_dir) / STAGE / "summary.json"
        data = read_json(path)
        if data is None:
            raise FileNotFoundError(f"{path} not found: run notebook 07 in {run_dir} first")
        per_seed[str(seed)] = data
    benchmarks = {d["benchmark"] for d in per_seed.values()}
    models = list(dict.fromkeys(name for d in per_seed.values() for name in d["models"]))
    out: dict[str, Any] = {"seeds": list(per_seed), "benchmark": sorted(benchmarks),
                           "num_items": {s: d["num_items"] for s, d in per_seed.items()}, "models": {}}
    for name in models:
        entry: dict[str, Any] = {}
        for part in ("overall",) + TIERS:
            values, cis, gains = {}, {}, {}
            for seed, data in per_seed.items():
                m = data["models"].get(name)
                if m is None:
                    continue
                if part == "overall":
                    values[seed], cis[seed] = m["accuracy"], m.get("accuracy_ci")
                elif part in m.get("tiers", {}):
                    values[seed], cis[seed] = m["tiers"][part]["accuracy"], m["tiers"][part].get("ci")
                vs = (m.get("vs_base") or {}).get(part)
                if vs:
                    gains[seed] = {"estimate": vs["estimate"], "ci": [vs["low"], vs["high"]]}
            if not values:
                continue
            entry[part] = {"per_seed": values, "ci": cis, **_mean_std(list(values.values()))}
            if gains:
                entry[part]["vs_base"] = {"per_seed": gains, **_mean_std([g["estimate"] for g in gains.values()])}
        out["models"][name] = entry
        rubrics = {seed: d["models"][name].get("rubrics") for seed, d in per_seed.items() if name in d["models"]}
        crs = {seed: d["models"][name].get("crs") for seed, d in per_seed.items() if name in d["models"]}
        if rubrics and crs and all(v is not None for v in (*rubrics.values(), *crs.values())):
            out.setdefault("quality", {})[name] = {"rubrics": {"per_seed": rubrics, **_mean_std(list(rubrics.values()))},
                                                   "crs": {"per_seed": crs, **_mean_std(list(crs.values()))}}
    model = headline_model(models)
    references = CONTROLS + ((HEADLINE_MODEL,) if model != HEADLINE_MODEL else ())
    out["comparisons"] = pooled_comparisons(per_seed, model, references)
    return out


def headline_verdicts(summary: Mapping, min_gain: float = 5.0) -> list[tuple[str, bool]]:
    """The headline's bars, each (what, met): the self-distilled model (its final round) at least `min_gain`
    points over the base with a pooled interval above 0; above base_cont on composite questions; above
    answer_only on composite questions."""
    comparisons = summary.get("comparisons") or {}
    vs, model = comparisons.get("vs") or {}, comparisons.get("model", HEADLINE_MODEL)
    out = []
    base = (vs.get("base") or {}).get("overall")
    if base:
        out.append((f"{model} - base >= {min_gain:g} points overall with the interval above 0 "
                    f"({base['estimate']:+.1f} [{base['low']:+.1f}, {base['high']:+.1f}])",
                    base["estimate"] >= min_gain and base["low"] > 0))
    for ref in ("base_cont", "answer_only"):
        c = (vs.get(ref) or {}).get("composite")
        if c:
            out.append((f"{model} - {ref} > 0 on composite questions, interval excluding 0 "
                        f"({c['estimate']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}])", c["low"] > 0))
    return out


def pooled_comparisons(per_seed: Mapping[str, Mapping], model: str = HEADLINE_MODEL,
                       references: Sequence[str] = CONTROLS, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """`model` minus each reference, per tier and overall, pooled over seeds: the estimate is the mean over seeds
    of the paired per-seed difference; the 95% interval resamples items within every seed (a stratified paired
    bootstrap), so it covers item noise and is centred on the seeds' mean. Needs summary.json files with
    per-item matches (written by notebook 07 since the seeds table was added); others are left out."""
    usable = {s: d for s, d in per_seed.items()
              if model in d["models"] and d["models"][model].get("per_item") and d.get("item_tiers")}
    out: dict[str, dict] = {}
    for ref in references:
        seeds = [s for s, d in usable.items() if (d["models"].get(ref) or {}).get("per_item")]
        if not seeds:
            continue
        entry = {}
        for part in ("overall",) + TIERS:
            diffs = []
            for s in seeds:
                d = usable[s]
                a, b = d["models"][model]["per_item"], d["models"][ref]["per_item"]
                ids = sorted(i for i in a if i in b and (part == "overall" or d["item_tiers"].get(i) == part))
                if ids:
                    diffs.append(np.asarray([a[i] - b[i] for i in ids], dtype=float))
            if len(diffs) != len(seeds):
                continue
            rng = np.random.default_rng(seed)
            boots = np.zeros(n_boot)
            for values in diffs:
                boots += values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
            boots /= len(diffs)
            low, high = np.quantile(boots, [0.025, 0.975])
            per = {s: 100.0 * float(v.mean()) for s, v in zip(seeds, diffs)}
            entry[part] = {"estimate": 100.0 * float(np.mean([v.mean() for v in diffs])), "low": 100.0 * float(low),
                           "high": 100.0 * float(high), "per_seed": per, "min_seed": min(per.values()),
                           "n_seeds": len(seeds), "n_items": int(sum(v.size for v in diffs))}
        out[ref] = entry
    return {"model": model, "vs": out} if out else {}


def _mean_std(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n_seeds": int(arr.size)}


def seeds_markdown(summary: Mapping) -> str:
    """The across-seed summary as a markdown table: mean +- std over seeds, each seed's value [item CI], and
    the difference to the base."""
    lines = [f"Benchmark: {', '.join(summary['benchmark'])}; seeds: {', '.join(summary['seeds'])}; "
             f"items per seed: {', '.join(str(v) for v in summary['num_items'].values())}", "",
             "| model | part | accuracy mean +- std | per seed [95% item CI] | vs base mean +- std | vs base per seed [CI] |",
             "|---|---|---|---|---|---|"]
    for name, entry in summary["models"].items():
        for part, e in entry.items():
            seeds = "; ".join(f"{s}: {v:.1f}" + (f" [{e['ci'][s][0]:.1f}, {e['ci'][s][1]:.1f}]" if e["ci"].get(s) else "")
                              for s, v in e["per_seed"].items())
            vs = e.get("vs_base")
            gain = f"{vs['mean']:+.1f} +- {vs['std']:.1f}" if vs else ""
            gain_seeds = "; ".join(f"{s}: {g['estimate']:+.1f} [{g['ci'][0]:+.1f}, {g['ci'][1]:+.1f}]"
                                   for s, g in vs["per_seed"].items()) if vs else ""
            lines.append(f"| {name} | {part} | {e['mean']:.1f} +- {e['std']:.1f} | {seeds} | {gain} | {gain_seeds} |")
    quality = summary.get("quality") or {}
    if quality:
        lines += ["", "| model | MMAR-Rubrics mean +- std | CRS mean +- std | per seed (rubrics / CRS) |",
                  "|---|---|---|---|"]
        for name, q in quality.items():
            rub, crs = q["rubrics"], q["crs"]
            seeds = "; ".join(f"{s}: {rub['per_seed'][s]:.1f} / {crs['per_seed'][s]:.2f}" for s in rub["per_seed"])
            lines.append(f"| {name} | {rub['mean']:.1f} +- {rub['std']:.1f} | {crs['mean']:.2f} +- {crs['std']:.2f} | "
                         f"{seeds} |")
    comparisons = summary.get("comparisons") or {}
    verdicts = headline_verdicts(summary)
    if verdicts:
        lines += ["", "The bars (issue: the miniature's headline), judged from the pooled intervals below:", ""]
        lines += [f"- {text}: **{'met' if ok else 'not met'}**" for text, ok in verdicts]
    if comparisons:
        lines += ["", f"Paired differences of {comparisons['model']}, pooled over seeds (95% interval: paired bootstrap "
                      "over items within each seed), with each seed's own difference:", "",
                  "| minus | part | difference [95% CI] | per seed | excludes 0 |", "|---|---|---|---|---|"]
        for ref, entry in comparisons["vs"].items():
            for part, c in entry.items():
                seeds = "; ".join(f"{s}: {v:+.1f}" for s, v in c["per_seed"].items())
                verdict = "yes, above" if c["low"] > 0 else "yes, below" if c["high"] < 0 else "no"
                lines.append(f"| {ref} | {part} | {c['estimate']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] | {seeds} | "
                             f"{verdict} |")
    return "\n".join(lines) + "\n"
