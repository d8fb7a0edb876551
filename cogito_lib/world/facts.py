"""Fact kinds: what a clip's metadata can state, each tied to one MMAR layer (Signal, Perception, Semantic,
Cultural). The annotator turns facts into questions; the metadata judge checks reasoning against them."""
from __future__ import annotations

from typing import NamedTuple

from ..mmar.rule import LAYERS  # MMAR's four layers, one definition for the whole kit


class FactKind(NamedTuple):
    name: str
    layer: str
    description: str


_KINDS = [
    # Signal: low-level acoustic properties
    FactKind("pitch_relation", "Signal", "is the last tone/note higher, lower or the same as the first: 'higher'|'lower'|'same'"),
    FactKind("loudness_change", "Signal", "is the last foreground event louder, softer or as loud as the first: 'louder'|'softer'|'same'"),
    FactKind("pitch_sequence", "Signal", "pitch class of each tone in order: list of 'low'|'mid'|'high'"),
    # Perception: counting, order, tempo, metre, layering
    FactKind("event_count", "Perception", "number of foreground events: int"),
    FactKind("temporal_order", "Perception", "labels of the foreground events in onset order: list of str"),
    FactKind("loudest_event", "Perception", "label of the single loudest foreground event: str"),
    FactKind("tempo", "Perception", "beat rate class: 'slow'|'fast'"),
    FactKind("metre", "Perception", "beats per bar heard from the accent pattern: 2|3|4"),
    FactKind("num_speakers", "Perception", "number of distinct speakers: int"),
    FactKind("foreground_background", "Perception", "what is in front and what is behind: {'foreground': [labels], 'background': [labels]}"),
    # Semantic: what the sounds are and say
    FactKind("instrument", "Semantic", "instrument playing the music: 'piano'|'guitar'|'flute'|'organ'"),
    FactKind("speaker_voice", "Semantic", "perceived voice of each speaker in speaking order: list of 'male'|'female'"),
    FactKind("spoken_content", "Semantic", "the words spoken, in order: list of str"),
    FactKind("scale_mode", "Semantic", "mode of the music: 'major'|'minor'"),
    FactKind("sound_source", "Semantic", "what made the salient sound: source name, e.g. 'siren'"),
    FactKind("cause_effect", "Semantic", "a sound and the spoken reaction it causes: {'cause': label, 'effect': text, 'relation': str}"),
    # Cultural: conventions and knowledge
    FactKind("mood", "Cultural", "conventional mood of the music's mode: 'happy' (major)|'sad' (minor)"),
    FactKind("sound_meaning", "Cultural", "what the salient sound conventionally means, e.g. siren -> 'an emergency vehicle is coming'"),
    FactKind("language", "Cultural", "language spoken: 'english'|'spanish'|'french'|'german'|'italian'"),
    FactKind("dance_form", "Cultural", "dance the music accompanies: 'waltz' (3 beats) | 'march' (2 beats)"),
]

FACT_KINDS: dict[str, FactKind] = {kind.name: kind for kind in _KINDS}


def layers_of(facts: dict) -> list[str]:
    """The MMAR layers that a clip's facts cover, sorted by name."""
    return sorted({FACT_KINDS[name].layer for name in facts})
