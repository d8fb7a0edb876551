"""The headline across seeds: per-seed summaries pooled into one table, paired differences pooled over seeds
with a stratified bootstrap, and the bars the miniature's headline is judged by."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io import read_json
from ..layout import BASE_MODEL, CONTROLS, EVAL, HEADLINE_MODEL, headline_model
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
    for name, entry in out["models"].items():
        for part, e in entry.items():
            pooled = pooled_accuracy(per_seed, name, part)
            if pooled:
                e["pooled"] = pooled
    out["skills"] = skill_means(per_seed, models)
    out["chains"] = chain_means(per_seed, models)
    model = headline_model(models)
    references = CONTROLS + ((HEADLINE_MODEL,) if model != HEADLINE_MODEL else ())
    out["comparisons"] = pooled_comparisons(per_seed, model, references)
    return out


def pooled_accuracy(per_seed: Mapping[str, Mapping], model: str, part: str, *, n_boot: int = 2000,
                    seed: int = 0) -> dict | None:
    """`model`'s accuracy on `part` ("overall" or a tier), the mean over seeds with a 95% interval from a bootstrap
    over items within each seed; None unless every seed has the model's per-item matches."""
    values = []
    for data in per_seed.values():
        per = (data["models"].get(model) or {}).get("per_item")
        if not per or not data.get("item_tiers"):
            return None
        ids = sorted(i for i in per if part == "overall" or data["item_tiers"].get(i) == part)
        if not ids:
            return None
        values.append(np.asarray([per[i] for i in ids], dtype=float))
    return _pooled(values, list(per_seed), n_boot, seed) if values else None


def chain_means(per_seed: Mapping[str, Mapping], models: Sequence[str]) -> dict:
    """Each model's `chain_profile` per tier, the mean over the seeds that have it: {model: {tier: {key: percent}}}."""
    out: dict[str, dict] = {}
    for name in models:
        profiles = [d["models"][name]["chain_profile"] for d in per_seed.values()
                    if (d["models"].get(name) or {}).get("chain_profile")]
        if not profiles:
            continue
        tiers = [t for t in TIERS if all(t in p for p in profiles)]
        out[name] = {t: {k: float(np.mean([p[t][k] for p in profiles])) for k in profiles[0][t] if k != "n"}
                     for t in tiers}
    return out


def skill_means(per_seed: Mapping[str, Mapping], models: Sequence[str]) -> dict:
    """Accuracy per question skill, the mean over seeds of each seed's per-skill accuracy: {skill: {"tier", "n"
    (items per seed), model: percent}}. Needs summary.json files with `item_skills`; empty otherwise."""
    if not all(d.get("item_skills") for d in per_seed.values()):
        return {}
    table: dict[str, dict] = {}
    for data in per_seed.values():
        skills: dict[str, list[str]] = {}
        for item, skill in data["item_skills"].items():
            skills.setdefault(str(skill), []).append(item)
        for skill, ids in skills.items():
            row = table.setdefault(skill, {"tier": data["item_tiers"].get(ids[0]), "n": len(ids), "_seeds": {}})
            for name in models:
                per = (data["models"].get(name) or {}).get("per_item")
                if per:
                    row["_seeds"].setdefault(name, []).append(100.0 * float(np.mean([per[i] for i in ids])))
    out = {}
    order = {tier: i for i, tier in enumerate(TIERS)}
    for skill, row in sorted(table.items(), key=lambda kv: (order.get(kv[1]["tier"], 9), kv[0])):
        out[skill] = {"tier": row["tier"], "n": row["n"],
                      **{name: float(np.mean(v)) for name, v in row.pop("_seeds").items()}}
    return out


BARS = ("gain over the base", "reasoning over labels, same questions", "transfer to held-out compositions",
        "reasoning quality")


def headline_verdicts(summary: Mapping, min_gain: float = 5.0) -> list[tuple[str, bool]]:
    """The miniature headline's four bars, each (what, met), from the pooled comparisons of `summarise_seeds`:

    1. the final self-distilled model minus the base, overall: at least `min_gain` points, interval above 0;
    2. minus `answer_only_matched` (the same questions' labels) on composite questions: interval above 0;
    3. minus `answer_only` (every annotated label) on the held-out compositions: interval above 0;
    4. MMAR-Rubrics and CRS above the base's (means over seeds).

    A bar whose comparison is missing from the runs is listed as not met, saying what is missing."""
    comparisons = summary.get("comparisons") or {}
    vs, model = comparisons.get("vs") or {}, comparisons.get("model", HEADLINE_MODEL)

    def interval(c):
        return f"{c['estimate']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]"

    out = []
    base = (vs.get("base") or {}).get("overall")
    what = f"{model} - base >= {min_gain:g} points overall, interval above 0"
    out.append((f"{what} ({interval(base)})", base["estimate"] >= min_gain and base["low"] > 0) if base
               else (f"{what} (not measured: no base in these runs)", False))
    for ref, part, label in (("answer_only_matched", "composite", "composite questions"),
                             ("answer_only", "heldout", "held-out compositions")):
        c = (vs.get(ref) or {}).get(part)
        what = f"{model} - {ref} on {label}, interval above 0"
        out.append((f"{what} ({interval(c)})", c["low"] > 0) if c
                   else (f"{what} (not measured: no {ref} or no {part} items in these runs)", False))
    quality = summary.get("quality") or {}
    mine, theirs = quality.get(model), quality.get(BASE_MODEL)
    what = f"{model}'s MMAR-Rubrics and CRS above the base's"
    if mine and theirs:
        rubrics = (vs.get(BASE_MODEL) or {}).get("rubrics")
        paired = f"; paired rubric difference {interval(rubrics)}" if rubrics else ""
        out.append((f"{what} (rubrics {mine['rubrics']['mean']:.1f} vs {theirs['rubrics']['mean']:.1f}, CRS "
                    f"{mine['crs']['mean']:.2f} vs {theirs['crs']['mean']:.2f}{paired})",
                    mine["rubrics"]["mean"] > theirs["rubrics"]["mean"] and mine["crs"]["mean"] > theirs["crs"]["mean"]))
    else:
        out.append((f"{what} (not measured: no rubric scores in these runs)", False))
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
            entry[part] = _pooled(diffs, seeds, n_boot, seed)
        rubric_seeds = [s for s in seeds if usable[s]["models"][model].get("rubric_per_item")
                        and usable[s]["models"][ref].get("rubric_per_item")]
        if rubric_seeds and len(rubric_seeds) == len(seeds):
            diffs = []
            for s in seeds:
                a, b = usable[s]["models"][model]["rubric_per_item"], usable[s]["models"][ref]["rubric_per_item"]
                diffs.append(np.asarray([a[i] - b[i] for i in sorted(a) if i in b], dtype=float))
            entry["rubrics"] = _pooled(diffs, seeds, n_boot, seed)
        out[ref] = entry
    return {"model": model, "vs": out} if out else {}


def _pooled(diffs: list[np.ndarray], seeds: Sequence[str], n_boot: int, seed: int) -> dict:
    """Mean over seeds of each seed's mean paired difference (x100), with a stratified bootstrap interval."""
    rng = np.random.default_rng(seed)
    boots = np.zeros(n_boot)
    for values in diffs:
        boots += values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    boots /= len(diffs)
    low, high = np.quantile(boots, [0.025, 0.975])
    per = {s: 100.0 * float(v.mean()) for s, v in zip(seeds, diffs)}
    return {"estimate": 100.0 * float(np.mean([v.mean() for v in diffs])), "low": 100.0 * float(low),
            "high": 100.0 * float(high), "per_seed": per, "min_seed": min(per.values()), "n_seeds": len(seeds),
            "n_items": int(sum(v.size for v in diffs))}


def _mean_std(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n_seeds": int(arr.size)}


def headline_table(summary: Mapping) -> str:
    """One row per model: accuracy overall and per tier (mean over seeds [95% interval, bootstrap over items within
    seeds]), then MMAR-Rubrics and CRS (means over seeds)."""
    parts = ["overall"] + [t for t in TIERS if any(t in e for e in summary["models"].values())]
    quality = summary.get("quality") or {}
    lines = ["| model | " + " | ".join(parts) + " | MMAR-Rubrics | CRS |",
             "|---|" + "---|" * (len(parts) + 2)]
    for name, entry in summary["models"].items():
        cells = []
        for part in parts:
            e = entry.get(part)
            if not e:
                cells.append("")
                continue
            pooled = e.get("pooled")
            cells.append(f"{e['mean']:.1f} [{pooled['low']:.1f}, {pooled['high']:.1f}]" if pooled
                         else f"{e['mean']:.1f} +- {e['std']:.1f}")
        q = quality.get(name)
        cells += [f"{q['rubrics']['mean']:.1f}", f"{q['crs']['mean']:.2f}"] if q else ["", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def differences_table(summary: Mapping) -> str:
    """The final model minus every control, per part, pooled over seeds: estimate [95% interval] and per seed."""
    comparisons = summary.get("comparisons") or {}
    if not comparisons:
        return ""
    lines = ["| minus | part | difference [95% CI] | per seed | excludes 0 |", "|---|---|---|---|---|"]
    for ref, entry in comparisons["vs"].items():
        for part, c in entry.items():
            seeds = "; ".join(f"{s}: {v:+.1f}" for s, v in c["per_seed"].items())
            verdict = "yes, above" if c["low"] > 0 else "yes, below" if c["high"] < 0 else "no"
            lines.append(f"| {ref} | {part} | {c['estimate']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] | {seeds} | "
                         f"{verdict} |")
    return "\n".join(lines) + "\n"


def skills_table(summary: Mapping, models: Sequence[str] | None = None) -> str:
    """Accuracy per question skill (mean over seeds), one column per model: where the gains come from."""
    skills = summary.get("skills") or {}
    if not skills:
        return ""
    models = [m for m in (models or summary["models"]) if any(m in row for row in skills.values())]
    lines = ["| tier | skill | items/seed | " + " | ".join(models) + " |", "|---|---|---|" + "---|" * len(models)]
    for skill, row in skills.items():
        lines.append(f"| {row['tier']} | {skill} | {row['n']} | "
                     + " | ".join(f"{row[m]:.1f}" if m in row else "" for m in models) + " |")
    return "\n".join(lines) + "\n"


def chains_table(summary: Mapping) -> str:
    """How each model reasons per tier (means over seeds of `score.chain_profile`, percent of items)."""
    chains = summary.get("chains") or {}
    if not chains:
        return ""
    keys = ["reasons", "lists", "listing_right", "gold_steps", "chain_right", "correct"]
    lines = ["| model | tier | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, tiers in chains.items():
        for tier, row in tiers.items():
            lines.append(f"| {name} | {tier} | " + " | ".join(f"{row[k]:.1f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def verdicts_markdown(summary: Mapping) -> str:
    """The four bars, each stated as met or not met with its numbers."""
    verdicts = headline_verdicts(summary)
    return "\n".join(f"- {text}: **{'met' if ok else 'not met'}**" for text, ok in verdicts) + "\n"


def seeds_markdown(summary: Mapping) -> str:
    """The across-seed summary as markdown: every model per tier with intervals, the bars, the final model minus
    every control, accuracy per skill, then each seed's own numbers."""
    lines = [f"Benchmark: {', '.join(summary['benchmark'])}; seeds: {', '.join(summary['seeds'])}; "
             f"items per seed: {', '.join(str(v) for v in summary['num_items'].values())}", "",
             "Accuracy (mean over seeds [95% interval: bootstrap over items within each seed]); MMAR-Rubrics (x100) "
             "and CRS, means over seeds:", "", headline_table(summary)]
    comparisons = summary.get("comparisons") or {}
    lines += [f"The bars, judged from the pooled intervals below (final model: {comparisons.get('model', '-')}):",
              "", verdicts_markdown(summary)]
    if comparisons:
        lines += [f"Paired differences of {comparisons['model']}, pooled over seeds (95% interval: paired bootstrap "
                  "over items within each seed), with each seed's own difference:", "", differences_table(summary)]
    if summary.get("skills"):
        lines += ["Accuracy per skill (mean over seeds):", "", skills_table(summary)]
    if summary.get("chains"):
        lines += ["How each model reasons, per tier (percent of items, mean over seeds): writes reasoning, lists the "
                  "events, lists them right, states every step the reference chain needs, with the right values, "
                  "answers right:", "", chains_table(summary)]
    lines += ["Each seed: accuracy [95% item interval] and the difference to the base:", "",
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
    return "\n".join(lines) + "\n"
