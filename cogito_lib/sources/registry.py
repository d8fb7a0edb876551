"""The adapter of each of the paper's ten datasets, in the paper's order, and the MMAR layer of each fact kind."""
from __future__ import annotations

from .audiocaps import AudioCapsAdapter
from .audioset import AudioSetAdapter
from .base import Adapter
from .clotho import ClothoAdapter
from .complexaudio import ComplexAudioAdapter
from .covost2 import CoVoST2Adapter
from .dailytalk import DailyTalkAdapter
from .fma import FMAAdapter
from .meld import MELDAdapter
from .medley_solos_db import MedleySolosDBAdapter
from .musicbench import MusicBenchAdapter

ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    AudioSetAdapter(), ClothoAdapter(), AudioCapsAdapter(), ComplexAudioAdapter(),
    MELDAdapter(), CoVoST2Adapter(), DailyTalkAdapter(),
    MusicBenchAdapter(), FMAAdapter(), MedleySolosDBAdapter(),
)}
DOMAINS = ("sound", "speech", "music")

# MMAR layer of each fact kind a dataset clip may carry (names shared with the world keep the world's layer)
FACT_LAYERS: dict[str, str] = {
    "sound_labels": "Perception", "captions": "Semantic", "keywords": "Semantic",
    "transcript": "Semantic", "speaker": "Perception", "emotion": "Semantic", "sentiment": "Semantic",
    "dialogue_history": "Semantic", "dialogue_act": "Semantic", "topic": "Semantic",
    "language": "Cultural", "translations": "Cultural",
    "tempo_bpm": "Perception", "metre": "Perception", "key": "Cultural", "scale_mode": "Semantic",
    "chords": "Cultural", "chord_times_s": "Signal", "augmentation": "Signal",
    "genre": "Cultural", "genres": "Cultural", "track_title": "Cultural", "artist": "Cultural", "album": "Cultural",
    "instrument": "Semantic",
}


def available() -> dict[str, Adapter]:
    return {name: a for name, a in ADAPTERS.items() if a.available}


def unavailable() -> dict[str, str]:
    """Datasets without an adapter, with the reason."""
    return {name: a.unavailable_reason for name, a in ADAPTERS.items() if not a.available}


def layers_of(facts: dict) -> list[str]:
    return sorted({FACT_LAYERS[k] for k in facts if k in FACT_LAYERS})
