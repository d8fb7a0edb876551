"""MMAR-synth: an MMAR-format benchmark drawn from a held-out split of the procedural world.

The miniature's stand-in for MMAR (chapter 07). Every item has MMAR's fields (`id, audio_path, question, choices,
answer, modality, category, sub-category, language, source, url, timestamp`), the MMAR-Rubrics fields
(`thinking` = gold reasoning, `cue` = short hints from the metadata, a 5-item `rubric` from `skills.rubric_for`)
and the kit's own (`tier`, `skill`, `listing`, `steps`, `clip_id`), so `load_meta` and the official-format
scorer read it exactly as they read MMAR.

Layout of `RUN_DIR/07-mmar-evaluation/mmar-synth/`:
    MMAR-meta.jsonl    the benchmark (one item a line)
    audio/<clip>.wav   the held-out clips (several questions may share one clip)
    synth.json         what it was built from (fingerprint, seed, counts by modality / layer / tier)
    manifest.jsonl ... the world's own files for these clips (`cogito_lib.world.collect`)

Selection is balanced: the clips cycle over the 7 modality classes, every (clip, skill) pair the clip supports
is a candidate, and items are picked one at a time from the tier with fewer items so far, then the modality
with fewest items, then its layer with fewest items, then the least asked skill and the least used clip, so both tiers and every reachable
cell are covered as evenly as the world allows. Everything is drawn from `numpy` generators seeded by
`profile.eval.seed`, so a seed always gives the same benchmark.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import Profile
from ..io import AUDIO_HASH, clip_problem, read_json, read_jsonl, stable_id, write_json, write_jsonl
from ..layout import EVAL as STAGE
from ..layout import data_code_hash
from ..mmar import LAYERS, MODALITIES, load_meta, normalise_category
from .collect import collect
from .skills import SKILLS, make_question, rubric_for

SYNTH_DIR = "mmar-synth"
META_NAME = "MMAR-meta.jsonl"
SPLIT = "heldout"
SOURCE = "cogito-world"
MAX_QUESTIONS_PER_CLIP = 3
LANGUAGE_CODES = {"english": "en", "spanish": "es", "french": "fr", "german": "de", "italian": "it"}


def synth_dir(run_dir: str | Path) -> Path:
    """Where MMAR-synth lives in a run dir."""
    return Path(run_dir) / STAGE / SYNTH_DIR


def num_clips_for(num_items: int) -> int:
    """Clips to synthesise for `num_items` items: about two items a clip, a whole number of modality cycles."""
    clips = max(len(MODALITIES), math.ceil(num_items / 2))
    return len(MODALITIES) * math.ceil(clips / len(MODALITIES))


def _fingerprint(profile: Profile, num_items: int, seed: int) -> str:
    # the skills and world code are part of the key: a change makes a different benchmark
    return stable_id(dataclasses.asdict(profile.world), num_items, seed, data_code_hash(), "synth-v1")


def _language(clip: dict) -> str | None:
    language = clip["facts"].get("language")
    if language:
        return LANGUAGE_CODES.get(language, language)
    return "en" if "speech" in clip["modality"] else None


def _cue(question: dict) -> list[str]:
    """Short hints from the metadata, like MMAR-Rubrics' `cue`: how much there is to hear and what decides."""
    first_key = question["steps"][0][0]
    last_key = question["steps"][-1][0]
    cue = [f"The clip has {len(question['listing'])} audible event(s)."]
    cue.append(f"Work out '{first_key}' first." if first_key == last_key
               else f"Work out '{first_key}', then '{last_key}'.")
    return cue


def to_mmar_item(question: dict, clip: dict) -> dict:
    """A `skills.make_question` record as an MMAR-meta row (every official field, rubric fields, kit fields)."""

    return {
        "id": question["id"],
        "audio_path": f"./{question['audio_path']}",
        "question": question["question"],
        "choices": list(question["choices"]),
        "answer": question["answer"],
        "modality": question["modality"],
        "category": question["category"],
        "sub-category": question["sub-category"],
        "language": _language(clip),
        "source": SOURCE,
        "url": None,
        "timestamp": None,
        "thinking": question["thinking"],
        "cue": _cue(question),
        "rubric": rubric_for(question),
        "tier": question["tier"],
        "skill": question["skill"],
        "listing": list(question["listing"]),
        "steps": [list(step) for step in question["steps"]],
        "clip_id": question["clip_id"],
    }


def candidates(clips: list[dict], seed: int) -> list[dict]:
    """Every (clip, skill) question the clips support, as MMAR rows, each drawn from its own seeded generator."""

    out = []
    for index, clip in enumerate(clips):
        for number, name in enumerate(SKILLS):
            rng = np.random.default_rng([seed, index, number])
            question = make_question(clip, name, rng)
            if question is not None:
                out.append(to_mmar_item(question, clip))
    return out


def select_balanced(pool: list[dict], num_items: int, seed: int,
                    max_per_clip: int = MAX_QUESTIONS_PER_CLIP) -> list[dict]:
    """`num_items` rows of `pool`, balanced over tiers, then modalities, layers within them, skills and clips."""
    rng = np.random.default_rng([seed, 7])
    order = [pool[i] for i in rng.permutation(len(pool))]   # random tie-breaking, fixed by the seed
    remaining = {id(row): row for row in order}
    tier_count: Counter = Counter()
    cell_count: Counter = Counter()
    clip_count: Counter = Counter()
    skill_count: Counter = Counter()
    modality_count: Counter = Counter()
    chosen: list[dict] = []
    while len(chosen) < num_items and remaining:
        open_rows = [r for r in remaining.values() if clip_count[r["clip_id"]] < max_per_clip]
        if not open_rows:
            open_rows = list(remaining.values())   # the world is too small for the cap: relax it
        tiers = {r["tier"] for r in open_rows}
        tier = min(sorted(tiers), key=lambda t: tier_count[t])
        rows = [r for r in open_rows if r["tier"] == tier]
        low = min(modality_count[r["modality"]] for r in rows)
        rows = [r for r in rows if modality_count[r["modality"]] == low]
        cell = lambda r: (r["modality"], normalise_category(r["category"]))  # noqa: E731
        low = min(cell_count[cell(r)] for r in rows)
        rows = [r for r in rows if cell_count[cell(r)] == low]
        # then the least asked skill and the least used clip (first in the seeded order among ties)
        row = min(rows, key=lambda r: (skill_count[r["skill"]], clip_count[r["clip_id"]]))
        # no two questions of one skill on one clip, and no duplicate ids
        del remaining[id(row)]
        for other in [r for r in remaining.values()
                      if r["clip_id"] == row["clip_id"] and r["skill"] == row["skill"] or r["id"] == row["id"]]:
            del remaining[id(other)]
        chosen.append(row)
        tier_count[tier] += 1
        cell_count[cell(row)] += 1
        clip_count[row["clip_id"]] += 1
        skill_count[row["skill"]] += 1
        modality_count[row["modality"]] += 1
    return chosen


def counts(items: list[dict]) -> dict:
    """Items by tier, modality, layer, skill and (modality, layer) cell."""
    return {
        "num_items": len(items),
        "by_tier": dict(sorted(Counter(it["tier"] for it in items).items())),
        "by_modality": {m: sum(it["modality"] == m for it in items) for m in MODALITIES},
        "by_layer": {layer: sum(normalise_category(it["category"]) == layer for it in items) for layer in LAYERS},
        "by_skill": dict(sorted(Counter(it["skill"] for it in items).items())),
        "cells": {f"{m} / {layer}": n for (m, layer), n in sorted(
            Counter((it["modality"], normalise_category(it["category"])) for it in items).items())},
    }


def _clips_intact(folder: Path) -> bool:
    """Is every clip of a built MMAR-synth still the one written (content hash)? If not, building again remakes
    the damaged clips (the same bytes) and keeps the rest."""
    return all(clip_problem(folder / c["audio_path"], c.get(AUDIO_HASH)) is None
               for c in read_jsonl(folder / "manifest.jsonl"))


def build_mmar_synth(profile: Profile, run_dir: str | Path, *, num_items: int | None = None,
                     seed: int | None = None, progress: bool = True) -> dict:
    """Build (or reuse) MMAR-synth in `RUN_DIR/07-mmar-evaluation/mmar-synth/`; return its synth.json record.

    Defaults come from `profile.eval` (num_items, seed). The clips are a world split of their own ("heldout",
    seed `profile.eval.seed`), disjoint from pretraining and curation. Rebuilt only when the settings or the
    world/task code change."""
    num_items = profile.eval.num_items if num_items is None else int(num_items)
    seed = profile.eval.seed if seed is None else int(seed)
    if num_items < 1:
        raise ValueError(f"eval.num_items = {num_items}: MMAR-synth needs at least 1 item")
    folder = synth_dir(run_dir)
    key = _fingerprint(profile, num_items, seed)
    info = read_json(folder / "synth.json")
    if info and info.get("fingerprint") == key and (folder / META_NAME).exists() and _clips_intact(folder):
        return {**info, "meta": str(folder / META_NAME), "cached": True}   # the run dir may have moved
    num_clips = num_clips_for(num_items)
    stats = collect(profile, run_dir, num_clips=num_clips, seed=seed, split=SPLIT,
                    out_subdir=f"{STAGE}/{SYNTH_DIR}", progress=progress)
    clips = read_jsonl(folder / "manifest.jsonl")
    items = select_balanced(candidates(clips, seed), num_items, seed)
    order = {c["clip_id"]: i for i, c in enumerate(clips)}
    items.sort(key=lambda it: (order[it["clip_id"]], it["skill"]))
    write_jsonl(folder / META_NAME, items)
    problems = load_meta(folder / META_NAME).problems
    if problems:
        raise RuntimeError(f"MMAR-synth failed its own validation ({len(problems)} problem(s)), e.g. {problems[0]}")
    info = {"fingerprint": key, "seed": seed, "split": SPLIT, "num_requested": num_items, "num_clips": len(clips),
            "num_failed_clips": stats["num_failed"], "meta": str(folder / META_NAME), **counts(items)}
    if len(items) < num_items:
        info["note"] = (f"the world supported only {len(items)} of {num_items} items from {len(clips)} clips "
                        f"(at most {MAX_QUESTIONS_PER_CLIP} per clip)")
    write_json(folder / "synth.json", info)
    return {**info, "cached": False}
