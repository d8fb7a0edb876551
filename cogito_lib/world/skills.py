"""Questions, answers and reasoning from a clip's ground-truth metadata (the miniature's source of truth).

One implementation serves every stage that needs it:
- notebook 01 pretrains the tiny base on **atomic** skills with gold reasoning (what one hears: counts, order,
  pitch, loudness, instrument, voice, words, ...);
- the metadata-grounded annotator (03) writes **composite** multi-step questions with labels only;
- MMAR-synth (07) draws both tiers from a held-out world split, with reference reasoning and a rubric;
- the metadata judge (`cogito_lib.judges.MetadataJudge`) checks a trace's claims against the same truth.

Reasoning is categorical and line-based so that a tiny model can learn it and a judge can check it:

    I hear: loud mid beep; medium high beep; quiet low beep
    Low beeps: quiet low beep
    Count: 1
    So the answer is 1.

The first line lists every audible event in time order (the "enumerate every event" skill, docs/miniature.md);
each further line is one `Key: value` step; the last line states the answer.

Three tiers of question types:
- **atomic**: one perceptual fact, one or two steps (what the base is pretrained on);
- **composite**: a chain of atomic steps ending in a conclusion (a step's value, a count, a yes/no comparison
  `Same: yes`, a choice that names two step values); the annotator writes these for training, and the base
  may be pretrained on gold chains for some of them (`base.chain_share`, `base.chain_skills`);
- **heldout**: compositions that nothing in training ever asks (no pretraining chain, no annotator question):
  new combinations or longer chains of the same atomic steps, ending in conclusion forms the composite tier
  uses. MMAR-synth reports them as a tier of their own: where reasoning that chains known steps should pay off
  and label fitting cannot.

Every composite and held-out answer is a function of its chain's step values (tests/test_skills.py checks it on
real clips), so a model that chains the steps correctly can always answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..io import stable_id

LISTING_PREFIX = "I hear: "
CONCLUSION_PREFIX = "So the answer is "
LOUDNESS_ORDER = ("quiet", "medium", "loud")
PITCH_ORDER = ("low", "mid", "high")
VOICE_WORD = {"male": "man", "female": "woman"}
INSTRUMENTS = ("piano", "guitar", "flute", "organ")
CONFUSABLE_INSTRUMENT = {"piano": "guitar", "guitar": "piano", "flute": "organ", "organ": "flute"}
LANGUAGES = ("english", "spanish", "french", "german", "italian")
TIERS = ("atomic", "composite", "heldout")
TRAINED_TIERS = ("atomic", "composite")  # tiers that training data (pretraining, the annotator) may ask


# --- describing what is heard ----------------------------------------------------------------------------------

def strip_article(label: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", label.strip())


def core_label(event: dict) -> str:
    """The event without loudness words: "mid beep", "phone ringing", 'woman says "Hello?"'."""
    return strip_article(event["label"])


def describe_event(event: dict) -> str:
    """How the listing names one event: foreground sounds carry their loudness class, speech its words,
    background beds say so."""
    core = core_label(event)
    if event.get("role") == "background":
        return f"{core} in the background"
    if event.get("kind") == "speech":
        return core
    return f"{event['loudness']} {core}"


def ordered_events(clip: dict) -> list[dict]:
    return sorted(clip["events"], key=lambda e: (e["onset_s"], e["offset_s"]))


def foreground(clip: dict) -> list[dict]:
    return [e for e in ordered_events(clip) if e.get("role") == "foreground"]


def listing(clip: dict) -> list[str]:
    """Every audible event in onset order, as the reasoning's first line names them."""
    return [describe_event(e) for e in ordered_events(clip)]


# --- the reasoning format ------------------------------------------------------------------------------------

def reasoning_text(listed: list[str], steps: list[tuple[str, str]], answer: str) -> str:
    lines = [LISTING_PREFIX + "; ".join(listed)]
    lines += [f"{key}: {value}" for key, value in steps]
    lines.append(f"{CONCLUSION_PREFIX}{answer}.")
    return "\n".join(lines)


@dataclass
class ParsedReasoning:
    """A trace taken apart: the listing, the `Key: value` steps, the stated conclusion, and lines that fit none."""

    listing: list[str] | None = None
    steps: list[tuple[str, str]] = field(default_factory=list)
    conclusion: str | None = None
    other_lines: list[str] = field(default_factory=list)


def parse_reasoning(thinking: str) -> ParsedReasoning:
    parsed = ParsedReasoning()
    for raw in thinking.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(LISTING_PREFIX.strip()) and parsed.listing is None:
            body = line[len(LISTING_PREFIX.strip()):].strip()
            parsed.listing = [item.strip() for item in body.split(";") if item.strip()]
        elif line.startswith(CONCLUSION_PREFIX):
            parsed.conclusion = line[len(CONCLUSION_PREFIX):].strip().removesuffix(".").strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            parsed.steps.append((key.strip(), value.strip()))
        else:
            parsed.other_lines.append(line)
    return parsed


# --- questions ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Skill:
    """One kind of question: its tier, MMAR layer and sub-category, and how to build it from a clip."""

    name: str
    tier: str
    category: str  # MMAR category, e.g. "Perception Layer"
    sub_category: str  # MMAR-style sub-category
    build: Callable[[dict, np.random.Generator], "Draft | None"]


@dataclass(frozen=True)
class Draft:
    question: str
    answer: str
    distractors: tuple[str, ...]
    steps: tuple[tuple[str, str], ...]
    optional: tuple[str, ...] = ()  # step keys that only restate the listing: a trace may skip them


def _choices(answer: str, distractors, rng: np.random.Generator, k: int = 4) -> list[str]:
    seen, options = {answer}, [answer]
    for d in distractors:
        if d not in seen and len(options) < k:
            seen.add(d)
            options.append(d)
    order = rng.permutation(len(options))
    return [options[i] for i in order]


def _shuffled(rng: np.random.Generator, items) -> list[str]:
    """`items` in a random order, as plain str (numpy's permutation would hand back numpy strings)."""
    items = list(items)
    return [str(items[i]) for i in rng.permutation(len(items))]


def _count_distractors(n: int) -> tuple[str, ...]:
    near = [n - 1, n + 1, n + 2, n - 2]  # off by one first: the hard negatives
    return tuple(str(v) for v in near if v >= 1)


def _listing_items(events: list[dict]) -> str:
    return "; ".join(describe_event(e) for e in events) or "none"


# atomic skills: one perceptual fact, reasoning = listing + one or two steps

def _count(clip, rng):
    fg = foreground(clip)
    if "event_count" not in clip["facts"] or not fg:
        return None
    n = len(fg)
    return Draft("How many sounds are there in the foreground?", str(n), _count_distractors(n),
                 (("Count", str(n)),))


def _first_of_two(clip, rng):
    fg = foreground(clip)
    names = [core_label(e) for e in fg]
    if len(fg) < 2:
        return None
    i, j = sorted(rng.choice(len(fg), size=2, replace=False))
    if names[i] == names[j]:
        return None
    a, b = (names[i], names[j]) if rng.random() < 0.5 else (names[j], names[i])
    return Draft(f"Which is heard first: the {a} or the {b}?", names[i], (names[j],), (("Earlier", names[i]),))


def _pitch_relation(clip, rng):
    beeps = [e for e in foreground(clip) if e.get("pitch") and e["source"] == "beep"]
    if len(beeps) < 2:
        return None
    first, last = beeps[0]["pitch"], beeps[-1]["pitch"]
    relation = {1: "higher", -1: "lower", 0: "the same"}[
        int(np.sign(PITCH_ORDER.index(last) - PITCH_ORDER.index(first)))]
    return Draft("Is the last beep higher, lower or the same pitch as the first beep?", relation,
                 tuple(r for r in ("higher", "lower", "the same") if r != relation),
                 (("First pitch", first), ("Last pitch", last), ("Pitch change", relation)))


def _loudness_change(clip, rng):
    fg = foreground(clip)
    if "loudness_change" not in clip["facts"] or len(fg) < 2:
        return None
    first, last = fg[0]["loudness"], fg[-1]["loudness"]
    change = {1: "louder", -1: "softer", 0: "the same"}[
        int(np.sign(LOUDNESS_ORDER.index(last) - LOUDNESS_ORDER.index(first)))]
    return Draft("Is the last sound louder, softer or the same loudness as the first sound?", change,
                 tuple(c for c in ("louder", "softer", "the same") if c != change),
                 (("First loudness", first), ("Last loudness", last), ("Loudness change", change)))


def _instrument(clip, rng):
    instrument = clip["facts"].get("instrument")
    if instrument not in INSTRUMENTS:
        return None
    others = [CONFUSABLE_INSTRUMENT[instrument]] + [i for i in _shuffled(rng, INSTRUMENTS) if i != instrument]
    return Draft("Which instrument plays the music?", instrument, tuple(others), (("Instrument", instrument),))


def _mood(clip, rng):
    mode, mood = clip["facts"].get("scale_mode"), clip["facts"].get("mood")
    if not mode or not mood:
        return None
    other = "sad" if mood == "happy" else "happy"
    return Draft("Does the music sound happy or sad?", mood, (other,), (("Mode", mode), ("Mood", mood)))


def _tempo(clip, rng):
    tempo = clip["facts"].get("tempo")
    if not tempo:
        return None
    return Draft("Is the beat fast or slow?", tempo, ("slow" if tempo == "fast" else "fast",), (("Tempo", tempo),))


def _dance(clip, rng):
    dance, beats = clip["facts"].get("dance_form"), clip["facts"].get("metre")
    if not dance or not beats:
        return None
    return Draft("Which dance is this music written for?", dance, ("march" if dance == "waltz" else "waltz",),
                 (("Beats per bar", str(beats)), ("Dance", dance)))


def _speakers(clip, rng):
    voices = clip["facts"].get("speaker_voice")
    if not voices:
        return None
    n = clip["facts"]["num_speakers"]
    return Draft("How many different people speak?", str(n), tuple(str(v) for v in (n + 1, n - 1) if v >= 1),
                 (("Voices", ", ".join(VOICE_WORD[v] for v in voices)), ("Speakers", str(n))))


def _voice(clip, rng):
    voices = clip["facts"].get("speaker_voice")
    if not voices or len(set(voices)) != 1:
        return None
    word = VOICE_WORD[voices[0]]
    return Draft("Is the speaker a man or a woman?", word, ("woman" if word == "man" else "man",),
                 (("Voice", word),))


def _words(clip, rng):
    said = [e for e in foreground(clip) if e["kind"] == "speech"]
    if len(said) != 1:
        return None
    text = said[0]["text"].rstrip(".?!")
    others = [p.rstrip(".?!") for p in _shuffled(rng, WORDS_POOL) if p.rstrip(".?!") != text]
    return Draft(f"What does the {VOICE_WORD[said[0]['voice']]} say?", text, tuple(others), (("Words", text),))


def _language(clip, rng):
    language = clip["facts"].get("language")
    if not language:
        return None
    others = [lang for lang in _shuffled(rng, LANGUAGES) if lang != language]
    return Draft("Which language is spoken?", language, tuple(others), (("Language", language),))


def _source(clip, rng):
    source = clip["facts"].get("sound_source")
    match = [e for e in foreground(clip) if e["source"] == source]
    if not source or not match:
        return None
    name = core_label(match[0])
    others = [n for n in _shuffled(rng, SOUND_NAMES) if n != name]
    return Draft("Which of these sounds can be heard?", name, tuple(others), (("Source", name),))


def _meaning(clip, rng):
    source, meaning = clip["facts"].get("sound_source"), clip["facts"].get("sound_meaning")
    match = [e for e in foreground(clip) if e["source"] == source]
    if not meaning or not match:
        return None
    others = [m for m in _shuffled(rng, MEANINGS) if m != meaning]
    return Draft("What does the sound most likely mean?", meaning, tuple(others),
                 (("Source", core_label(match[0])), ("Meaning", meaning)))


def _background(clip, rng):
    layers = clip["facts"].get("foreground_background")
    bg = [e for e in ordered_events(clip) if e.get("role") == "background"]
    if not layers or len(bg) != 1:
        return None
    name = core_label(bg[0])
    others = [n for n in _shuffled(rng, BACKGROUND_NAMES) if n != name]
    return Draft("What is heard in the background?", name, tuple(others), (("Background", name),))


def _names(events: list[dict]) -> str:
    """How an answer names a set of events: "whistle and car horn" (or "none")."""
    names = [core_label(e) for e in events]
    return " and ".join(names) if names else "none"


def _subset_distractors(chosen: list[dict], pool: list[dict], rng) -> tuple[str, ...]:
    """Near-miss sets: one event dropped, one added, everything, nothing, a single other event."""
    others = [e for e in pool if e not in chosen]
    options = []
    if chosen:
        options.append(_names(chosen[:-1]) if len(chosen) > 1 else _names(others[:1]))
    if others:
        options.append(_names(sorted(chosen + [others[int(rng.integers(len(others)))]],
                                     key=lambda e: e["onset_s"])))
    options += [_names(pool), _names([]), _names(others[-1:])]
    answer = _names(chosen)
    return tuple(o for o in options if o != answer)


def _loud_sounds(clip, rng):
    fg = foreground(clip)
    if "event_count" not in clip["facts"] or len(fg) < 2:
        return None
    chosen = [e for e in fg if e["loudness"] == "loud"]
    return Draft("Which of the foreground sounds are loud?", _names(chosen), _subset_distractors(chosen, fg, rng),
                 (("Loud sounds", _listing_items(chosen)),))


def _pitch_filter(clip, rng):
    beeps = [e for e in foreground(clip) if e.get("pitch") and e["source"] == "beep"]
    if len(beeps) < 2:
        return None
    pitch = PITCH_ORDER[int(rng.integers(len(PITCH_ORDER)))]
    chosen = [e for e in beeps if e["pitch"] == pitch]
    return Draft(f"Which beeps are {pitch}?", _listing_items(chosen) if chosen else "none",
                 tuple(_listing_items(x) for x in ([b] for b in beeps) if x[0] not in chosen) + ("none",),
                 ((f"{pitch.capitalize()} beeps", _listing_items(chosen)),))


def _before(clip, rng):
    fg = foreground(clip)
    names = [core_label(e) for e in fg]
    candidates = [i for i in range(1, len(fg)) if names.count(names[i]) == 1 and names[i - 1] != names[i]]
    if not candidates:
        return None
    i = candidates[int(rng.integers(len(candidates)))]
    others = [n for n in names if n not in (names[i - 1], names[i])] + _shuffled(rng, SOUND_NAMES)
    return Draft(f"What is heard just before the {names[i]}?", names[i - 1],
                 tuple(n for n in others if n != names[i - 1]), (("Before", names[i - 1]),))


def _loudest(clip, rng):
    fg = foreground(clip)
    if not clip["facts"].get("loudest_event") or len(fg) < 2:
        return None
    top = max(fg, key=lambda e: LOUDNESS_ORDER.index(e["loudness"]))
    others = [core_label(e) for e in fg if e is not top]
    return Draft("Which sound is the loudest?", core_label(top), tuple(others), (("Loudest", core_label(top)),))


def _first(clip, rng):
    fg = foreground(clip)
    if len(fg) < 2 or core_label(fg[0]) in [core_label(e) for e in fg[1:]]:
        return None
    others = [core_label(e) for e in fg[1:]]
    return Draft("What is heard first?", core_label(fg[0]), tuple(others), (("First", core_label(fg[0])),))


def _last(clip, rng):
    fg = foreground(clip)
    if len(fg) < 2 or core_label(fg[-1]) in [core_label(e) for e in fg[:-1]]:
        return None
    others = [core_label(e) for e in fg[:-1]]
    return Draft("What is heard last?", core_label(fg[-1]), tuple(others), (("Last", core_label(fg[-1])),))


# composite skills: the annotator writes them with labels only. Their gold chains use the step keys that atomic
# skills teach (Loud sounds, Low beeps, Count, Words, Before, Loudest, First, Voices, Instrument, Mode, Mood, ...)
# plus the conclusion steps `Same` (yes/no) and `More`; the base sees gold chains only for the composite skills its
# profile pretrains (`base.chain_skills`, a share `base.chain_share` of its pretraining questions).

def _count_pitch(clip, rng):
    beeps = [e for e in foreground(clip) if e.get("pitch") and e["source"] == "beep"]
    if len(beeps) < 2:
        return None
    pitch = PITCH_ORDER[int(rng.integers(len(PITCH_ORDER)))]
    chosen = [e for e in beeps if e["pitch"] == pitch]
    n = len(chosen)
    return Draft(f"How many {pitch} beeps are there?", str(n),
                 tuple(str(v) for v in (n + 1, n - 1, len(beeps)) if v >= 0 and v != n),
                 ((f"{pitch.capitalize()} beeps", _listing_items(chosen)), ("Count", str(n))))


def _count_loud(clip, rng):
    fg = foreground(clip)
    if "event_count" not in clip["facts"] or len(fg) < 2:
        return None
    chosen = [e for e in fg if e["loudness"] == "loud"]
    n = len(chosen)
    return Draft("How many of the foreground sounds are loud?", str(n),
                 tuple(str(v) for v in (n + 1, n - 1, len(fg)) if v >= 0 and v != n),
                 (("Loud sounds", _listing_items(chosen)), ("Count", str(n))))


def _before_speech(clip, rng):
    fg = foreground(clip)
    idx = [i for i, e in enumerate(fg) if e["kind"] == "speech"]
    if len(idx) != 1 or idx[0] == 0:
        return None
    prev = core_label(fg[idx[0] - 1])
    others = [core_label(e) for e in fg if core_label(e) != prev and e["kind"] != "speech"]
    others += [n for n in _shuffled(rng, SOUND_NAMES) if n != prev]
    return Draft("What is heard just before the person speaks?", prev, tuple(others),
                 (("Words", fg[idx[0]]["text"].rstrip(".?!")), ("Before", prev)), optional=("Words",))


def _loudest_is(clip, position: str):
    """(loudest event, the event at `position` ("First"/"Last"), "yes"/"no") or None. The comparison is by name,
    so clips where two different events share a name with either of them are left out."""
    fg = foreground(clip)
    if not clip["facts"].get("loudest_event") or len(fg) < 2:
        return None
    top = max(fg, key=lambda e: LOUDNESS_ORDER.index(e["loudness"]))
    other = fg[0] if position == "First" else fg[-1]
    names = [core_label(e) for e in fg]
    if names.count(core_label(top)) != 1 or names.count(core_label(other)) != 1:
        return None
    return top, other, "yes" if top is other else "no"


def _loudest_is_first(clip, rng):
    found = _loudest_is(clip, "First")
    if found is None:
        return None
    top, first, answer = found
    return Draft("Is the loudest sound also the first sound?", answer, ("no" if answer == "yes" else "yes",),
                 (("Loudest", core_label(top)), ("First", core_label(first)), ("Same", answer)))


def _last_vs_first_pitch_high(clip, rng):
    beeps = [e for e in foreground(clip) if e.get("pitch") and e["source"] == "beep"]
    if len(beeps) < 3:
        return None
    highs = sum(e["pitch"] == "high" for e in beeps)
    lows = sum(e["pitch"] == "low" for e in beeps)
    answer = "high" if highs > lows else "low" if lows > highs else "equal"
    return Draft("Are there more high beeps or more low beeps?", answer,
                 tuple(a for a in ("high", "low", "equal") if a != answer),
                 (("High beeps", _listing_items([e for e in beeps if e["pitch"] == "high"])),
                  ("Low beeps", _listing_items([e for e in beeps if e["pitch"] == "low"])), ("More", answer)))


def _reply_cause(clip, rng):
    cause = clip["facts"].get("cause_effect")
    if not cause:
        return None
    fg = foreground(clip)
    said = [e for e in fg if e["kind"] == "speech"]
    sounds = [e for e in fg if e["kind"] == "sound"]
    if len(said) != 1 or not sounds:
        return None
    cause_event = [e for e in sounds if e["label"] == cause["cause"]]
    if not cause_event:
        return None
    name = core_label(cause_event[0])
    others = [n for n in _shuffled(rng, SOUND_NAMES) if n != name]
    text = said[0]["text"].rstrip(".?!")
    return Draft(f'What made the {VOICE_WORD[said[0]["voice"]]} say "{text}"?', name, tuple(others),
                 (("Words", text), ("Before", name)), optional=("Words",))


def _word_count(clip, rng):
    said = [e for e in foreground(clip) if e["kind"] == "speech"]
    if len(said) != 1:
        return None
    text = said[0]["text"]
    n = len(re.findall(r"[^\W\d_]+", text))
    return Draft(f"How many words does the {VOICE_WORD[said[0]['voice']]} say?", str(n), _count_distractors(n),
                 (("Words", text.rstrip(".?!")), ("Count", str(n))), optional=("Words",))


def _second_speaker_words(clip, rng):
    said = [e for e in foreground(clip) if e["kind"] == "speech"]
    if len(said) != 2 or said[0]["voice"] == said[1]["voice"]:
        return None
    first, second = said
    text = second["text"].rstrip(".?!")
    others = [first["text"].rstrip(".?!")] + [w for w in _shuffled(rng, (p.rstrip(".?!") for p in WORDS_POOL))
                                               if w != text]
    return Draft(f"What does the {VOICE_WORD[second['voice']]} answer the {VOICE_WORD[first['voice']]}?", text,
                 tuple(others), (("Voices", f"{VOICE_WORD[first['voice']]}, {VOICE_WORD[second['voice']]}"),
                                 ("Words", text)), optional=("Voices",))


def _mood_instrument(clip, rng):
    instrument, mood, mode = (clip["facts"].get(k) for k in ("instrument", "mood", "scale_mode"))
    if instrument not in INSTRUMENTS or not mood:
        return None
    other_mood = "sad" if mood == "happy" else "happy"
    answer = f"a {mood} {instrument} tune"
    distractors = (f"a {other_mood} {instrument} tune", f"a {mood} {CONFUSABLE_INSTRUMENT[instrument]} tune",
                   f"a {other_mood} {CONFUSABLE_INSTRUMENT[instrument]} tune")
    return Draft("Which description fits the music?", answer, distractors,
                 (("Instrument", instrument), ("Mode", mode), ("Mood", mood)))


def _voice_over_background(clip, rng):
    said = [e for e in foreground(clip) if e["kind"] == "speech"]
    bg = [e for e in ordered_events(clip) if e.get("role") == "background"]
    if len(said) != 1 or len(bg) != 1:
        return None
    word, name = VOICE_WORD[said[0]["voice"]], core_label(bg[0])
    answer = f"a {word} over {name}"
    others = [f"a {'woman' if word == 'man' else 'man'} over {name}"] + [
        f"a {word} over {n}" for n in _shuffled(rng, BACKGROUND_NAMES) if n != name]
    return Draft("Who speaks, and over what background?", answer, tuple(others),
                 (("Background", name), ("Voice", word)))


# held-out compositions: never asked by the annotator, never pretrained as chains. Each chains atomic steps the base
# was pretrained on (Last, Loudest, Before, Meaning, Dance, Mood, Voice, Language, ...) and ends in a conclusion
# form the composite tier uses (a yes/no `Same` step, a step's value, a choice naming two step values).

def _loudest_is_last(clip, rng):
    found = _loudest_is(clip, "Last")
    if found is None:
        return None
    top, last, answer = found
    return Draft("Is the loudest sound also the last sound?", answer, ("no" if answer == "yes" else "yes",),
                 (("Loudest", core_label(top)), ("Last", core_label(last)), ("Same", answer)))


def _before_last(clip, rng):
    fg = foreground(clip)
    names = [core_label(e) for e in fg]
    if len(fg) < 2 or names.count(names[-1]) != 1 or names[-2] == names[-1]:
        return None
    others = [n for n in names if n != names[-2]] + _shuffled(rng, SOUND_NAMES)
    return Draft("What is heard just before the last sound?", names[-2], tuple(n for n in others if n != names[-2]),
                 (("Last", names[-1]), ("Before", names[-2])))


def _meaning_of_cause(clip, rng):
    cause, meaning = clip["facts"].get("cause_effect"), clip["facts"].get("sound_meaning")
    fg = foreground(clip)
    said = [e for e in fg if e["kind"] == "speech"]
    if not cause or not meaning or len(said) != 1:
        return None
    cause_event = [e for e in fg if e["kind"] == "sound" and e["label"] == cause["cause"]]
    if not cause_event:
        return None
    text = said[0]["text"].rstrip(".?!")
    others = [m for m in _shuffled(rng, MEANINGS) if m != meaning]
    return Draft(f'What does the sound that made the {VOICE_WORD[said[0]["voice"]]} say "{text}" mean?', meaning,
                 tuple(others), (("Words", text), ("Before", core_label(cause_event[0])), ("Meaning", meaning)),
                 optional=("Words",))


def _dance_mood(clip, rng):
    dance, beats, mode, mood = (clip["facts"].get(k) for k in ("dance_form", "metre", "scale_mode", "mood"))
    if not dance or not beats or not mood:
        return None
    other_dance = "march" if dance == "waltz" else "waltz"
    other_mood = "sad" if mood == "happy" else "happy"
    return Draft("Which dance is this, and does it sound happy or sad?", f"a {mood} {dance}",
                 (f"a {other_mood} {dance}", f"a {mood} {other_dance}", f"a {other_mood} {other_dance}"),
                 (("Beats per bar", str(beats)), ("Dance", dance), ("Mode", mode), ("Mood", mood)))


def _speaker_language(clip, rng):
    said = [e for e in foreground(clip) if e["kind"] == "speech"]
    if len(said) != 1 or not said[0].get("language"):
        return None
    word, language = VOICE_WORD[said[0]["voice"]], said[0]["language"]
    other = "woman" if word == "man" else "man"
    others = [f"a {other} speaking {language}"] + [f"a {w} speaking {lang}" for lang in _shuffled(rng, LANGUAGES)
                                                     for w in (word, other) if lang != language]
    return Draft("Who speaks, and in which language?", f"a {word} speaking {language}", tuple(others),
                 (("Voice", word), ("Language", language)))


# Vocabularies for distractors, derived from the world so they stay in sync with it.
def _world_vocab():
    from . import scenes

    sounds = tuple(sorted(strip_article(s.label) for s in scenes.SOUND_SOURCES.values()))
    beds = tuple(sorted(strip_article(label) for label, _ in scenes.BEDS.values()))
    music_beds = tuple(f"{i} music" for i in INSTRUMENTS)
    meanings = tuple(sorted({s.meaning for s in scenes.SOUND_SOURCES.values()}))
    words = tuple(scenes.MONOLOGUE_LINES) + tuple(w for pair in scenes.DIALOGUE_PAIRS for w in pair) + tuple(
        reply for reply, _ in scenes.CAUSES.values()) + tuple(scenes.REMARKS.values())
    return sounds, beds + music_beds, meanings, words


SOUND_NAMES, BACKGROUND_NAMES, MEANINGS, WORDS_POOL = _world_vocab()

SKILLS: dict[str, Skill] = {s.name: s for s in (
    Skill("count", "atomic", "Perception Layer", "Counting and Statistics", _count),
    Skill("first_of_two", "atomic", "Perception Layer", "Temporal Analysis", _first_of_two),
    Skill("pitch_change", "atomic", "Signal Layer", "Audio Difference Analysis", _pitch_relation),
    Skill("loudness_change", "atomic", "Signal Layer", "Acoustic Quality Analysis", _loudness_change),
    Skill("instrument", "atomic", "Semantic Layer", "Content Analysis", _instrument),
    Skill("mood", "atomic", "Cultural Layer", "Music Theory", _mood),
    Skill("tempo", "atomic", "Perception Layer", "Temporal Analysis", _tempo),
    Skill("dance", "atomic", "Cultural Layer", "Music Theory", _dance),
    Skill("speakers", "atomic", "Perception Layer", "Counting and Statistics", _speakers),
    Skill("voice", "atomic", "Semantic Layer", "Speaker Analysis", _voice),
    Skill("words", "atomic", "Semantic Layer", "Content Analysis", _words),
    Skill("language", "atomic", "Cultural Layer", "Culture of Speaker", _language),
    Skill("source", "atomic", "Perception Layer", "Environmental Perception and Reasoning", _source),
    Skill("meaning", "atomic", "Cultural Layer", "Professional Knowledge and Reasoning", _meaning),
    Skill("background", "atomic", "Perception Layer", "Spatial Analysis", _background),
    Skill("loud_sounds", "atomic", "Signal Layer", "Acoustic Quality Analysis", _loud_sounds),
    Skill("pitch_filter", "atomic", "Signal Layer", "Audio Difference Analysis", _pitch_filter),
    Skill("before", "atomic", "Perception Layer", "Temporal Analysis", _before),
    Skill("loudest", "atomic", "Signal Layer", "Acoustic Quality Analysis", _loudest),
    Skill("first", "atomic", "Perception Layer", "Temporal Analysis", _first),
    Skill("last", "atomic", "Perception Layer", "Temporal Analysis", _last),
    Skill("count_pitch", "composite", "Perception Layer", "Counting and Statistics", _count_pitch),
    Skill("count_loud", "composite", "Signal Layer", "Acoustic Quality Analysis", _count_loud),
    Skill("before_speech", "composite", "Perception Layer", "Temporal Analysis", _before_speech),
    Skill("loudest_is_first", "composite", "Signal Layer", "Audio Difference Analysis", _loudest_is_first),
    Skill("more_high_or_low", "composite", "Signal Layer", "Audio Difference Analysis", _last_vs_first_pitch_high),
    Skill("reply_cause", "composite", "Semantic Layer", "Emotion and Intention", _reply_cause),
    Skill("word_count", "composite", "Semantic Layer", "Content Analysis", _word_count),
    Skill("second_speaker_words", "composite", "Semantic Layer", "Speaker Analysis", _second_speaker_words),
    Skill("mood_instrument", "composite", "Cultural Layer", "Music Theory", _mood_instrument),
    Skill("voice_over_background", "composite", "Perception Layer", "Spatial Analysis", _voice_over_background),
    Skill("loudest_is_last", "heldout", "Signal Layer", "Audio Difference Analysis", _loudest_is_last),
    Skill("before_last", "heldout", "Perception Layer", "Temporal Analysis", _before_last),
    Skill("speaker_language", "heldout", "Semantic Layer", "Speaker Analysis", _speaker_language),
    Skill("meaning_of_cause", "heldout", "Cultural Layer", "Professional Knowledge and Reasoning", _meaning_of_cause),
    Skill("dance_mood", "heldout", "Cultural Layer", "Music Theory", _dance_mood),
)}


def skills_of(tier: str) -> list[str]:
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}: choose one of {', '.join(TIERS)}")
    return [name for name, skill in SKILLS.items() if skill.tier == tier]


def make_question(clip: dict, skill_name: str, rng: np.random.Generator, *, num_choices: int = 4) -> dict | None:
    """One MMAR-format question about `clip` for `skill_name`, or None when the clip cannot support it.

    The record has MMAR's fields (question, choices, answer, modality, category, sub-category) plus the kit's:
    id, clip_id, audio_path, tier, skill, steps (gold reasoning steps) and thinking (gold reasoning text).
    """
    skill = SKILLS[skill_name]
    draft = skill.build(clip, rng)
    if draft is None:
        return None
    choices = _choices(draft.answer, draft.distractors, rng, k=num_choices)
    if len(choices) < 2:
        return None
    steps = [list(step) for step in draft.steps]
    return {
        "id": stable_id(clip["clip_id"], skill_name, draft.question, choices),
        "clip_id": clip["clip_id"],
        "audio_path": clip["audio_path"],
        "question": draft.question,
        "choices": choices,
        "answer": draft.answer,
        "modality": clip["modality"],
        "category": skill.category,
        "sub-category": skill.sub_category,
        "tier": skill.tier,
        "skill": skill_name,
        "listing": listing(clip),
        "steps": steps,
        "optional_steps": list(draft.optional),
        "thinking": reasoning_text(listing(clip), draft.steps, draft.answer),
    }


def questions_for_clip(clip: dict, skills: list[str], rng: np.random.Generator, *, max_questions: int = 3,
                       num_choices: int = 4) -> list[dict]:
    """Up to `max_questions` questions of distinct skills that the clip supports, in a random skill order."""
    out = []
    for index in rng.permutation(len(skills)):
        question = make_question(clip, skills[index], rng, num_choices=num_choices)
        if question is not None:
            out.append(question)
        if len(out) >= max_questions:
            break
    return out


RUBRIC_ITEMS = (
    ("event count", "The reasoning lists as many events as the clip has."),
    ("event descriptions", "Every listed event is described correctly (source, loudness, pitch, words) and in order."),
    ("first step", "The first reasoning step after the listing is correct."),
    ("deciding step", "The last reasoning step, the one that decides the answer, is correct."),
    ("conclusion", "The reasoning ends by stating the answer it gives."),
)


def rubric_for(question: dict) -> list[dict]:
    """MMAR-Rubrics-style items for a miniature question: 5 binary checks of the reasoning."""
    steps = question["steps"]
    notes = {
        "event count": f"{len(question['listing'])} events",
        "event descriptions": "; ".join(question["listing"]),
        "first step": f"{steps[0][0]}: {steps[0][1]}",
        "deciding step": f"{steps[-1][0]}: {steps[-1][1]}",
        "conclusion": question["answer"],
    }
    return [{"name": name, "scoring_point": point, "note": notes[name], "choices": [0, 1]}
            for name, point in RUBRIC_ITEMS]


def clip_truths(clip: dict) -> dict[str, str]:
    """Every `Key: value` step an atomic skill can state about this clip, with its true value."""
    rng = np.random.default_rng(0)
    truths: dict[str, str] = {}
    for name in skills_of("atomic"):
        draft = SKILLS[name].build(clip, rng)
        if draft is not None:
            for key, value in draft.steps:
                if key not in ("Earlier", "Before"):  # depend on which events the question names
                    truths.setdefault(key, value)
    return truths


def supported_skills(clip: dict, skills: list[str] | None = None, seed: int = 0) -> list[str]:
    """The skills (of `skills`, default all) that can ask about this clip."""
    rng = np.random.default_rng(seed)
    return [s for s in (skills or list(SKILLS)) if SKILLS[s].build(clip, rng) is not None]
