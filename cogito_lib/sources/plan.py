"""The sampling plan: how many clips each dataset contributes to `collect.num_clips`.

The default is the paper's mix (AudioSet 179k, Clotho 6k, AudioCaps 40k, ComplexAudio 37k, MELD 24k, CoVoST2 56k,
DailyTalk 9k, MusicBench 88k, FMA 76k, Medley-solos-DB 35k) scaled to `collect.num_clips`. A dataset without an
adapter (ComplexAudio) gives its share to the available datasets of the same domain in proportion, so the paper's
sound/speech/music split is kept. `collect.mix` replaces the paper's weights (relative weights, unnamed datasets 0).
Quotas are whole numbers by the largest-remainder rule (ties go to the earlier dataset in the paper's order), so
they add up to exactly `num_clips`; the same profile always gives the same plan.
"""
from __future__ import annotations

from cogito_lib.config import ConfigError, Profile, parse_mix

from .registry import ADAPTERS, DOMAINS

PAPER_MIX: dict[str, int] = {name: a.paper_clips for name, a in ADAPTERS.items()}


def paper_weights() -> dict[str, float]:
    """The paper's clip counts with each unavailable dataset's share moved to its domain's available datasets."""
    weights = {name: float(count) for name, count in PAPER_MIX.items()}
    for name, adapter in ADAPTERS.items():
        if adapter.available:
            continue
        share = weights.pop(name)
        peers = [n for n, a in ADAPTERS.items() if a.available and a.domain == adapter.domain]
        total = sum(weights[n] for n in peers)
        for peer in peers:
            weights[peer] += share * weights[peer] / total
        weights[name] = 0.0
    return {name: weights[name] for name in ADAPTERS}


def mix_weights(profile: Profile) -> dict[str, float]:
    """{dataset: weight} of the profile: the paper's (adjusted) or `collect.mix`. A weight on a dataset without an
    adapter raises ConfigError naming collect.mix."""
    user = parse_mix(profile.collect.mix)
    if not user:
        return paper_weights()
    for name, weight in user.items():
        if weight > 0 and not ADAPTERS[name].available:
            raise ConfigError(f"collect.mix gives {name} weight {weight}, but {ADAPTERS[name].title} has no adapter "
                              f"({ADAPTERS[name].unavailable_reason}); give it 0 or leave it out")
    return {name: float(user.get(name, 0.0)) for name in ADAPTERS}


def quotas(weights: dict[str, float], num_clips: int) -> dict[str, int]:
    """Whole clip counts proportional to `weights` that add up to `num_clips` (largest remainder)."""
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError("collect.mix: every weight is 0")
    exact = {name: num_clips * w / total for name, w in weights.items()}
    counts = {name: int(x) for name, x in exact.items()}
    order = list(weights)
    left = num_clips - sum(counts.values())
    by_remainder = sorted(order, key=lambda n: (-(exact[n] - counts[n]), order.index(n)))
    for name in by_remainder[:left]:
        counts[name] += 1
    return counts


def domain_shares(counts: dict[str, float]) -> dict[str, float]:
    """Fraction of the total per domain (sound, speech, music)."""
    total = sum(counts.values()) or 1
    return {d: sum(v for n, v in counts.items() if ADAPTERS[n].domain == d) / total for d in DOMAINS}


def sampling_plan(profile: Profile, num_clips: int | None = None) -> list[dict]:
    """One row per dataset: name, title, domain, paper clips, weight, share and planned clips (no files read)."""
    num_clips = profile.collect.num_clips if num_clips is None else int(num_clips)
    weights = mix_weights(profile)
    planned = quotas(weights, num_clips)
    total = sum(weights.values())
    return [{"dataset": name, "title": a.title, "domain": a.domain, "paper_clips": a.paper_clips,
             "weight": round(weights[name], 6), "share": round(weights[name] / total, 6), "planned": planned[name],
             "available": a.available}
            for name, a in ADAPTERS.items()]
