"""ComplexAudio: listed by the paper (37k sound clips), but no published format was found, so there is no adapter.

What was searched (2026): dataset hubs, code search and issue trackers for "ComplexAudio". The name matches the
`complex_audio` subset of the Audio-Reasoner CoTA release (the paper's dataset list is the same as CoTA's sources),
but no description of its files, metadata fields or audio layout was found, and a public issue on the
Audio-Reasoner repository reports that this subset lacks source identifiers and has mismatched QA pairs. Without a
documented layout the kit does not guess one: the registry reports the dataset as unavailable with this reason,
and the paper mix gives its share to the other sound datasets (AudioSet, Clotho, AudioCaps) in proportion, so the
sound/speech/music split of the paper is kept.
"""
from __future__ import annotations

from pathlib import Path

from .base import Adapter, ScanResult, SourceError

REASON = ("no published format found: the paper does not describe ComplexAudio's files, and the only public "
          "match (the `complex_audio` subset of Audio-Reasoner's CoTA) documents no metadata fields or audio "
          "layout; its share of the paper mix goes to the other sound datasets")


class ComplexAudioAdapter(Adapter):
    name = "complexaudio"
    title = "ComplexAudio"
    domain = "sound"
    skill = "sound-events"
    paper_clips = 37_000
    url = "(none found)"
    size = "unknown"
    download = "nothing (no adapter)"
    expects = "(no documented format)"
    available = False
    unavailable_reason = REASON

    def metadata_files(self, root: Path) -> list[Path]:
        return []

    def scan(self, root: Path) -> ScanResult:
        raise SourceError(f"ComplexAudio: {REASON}")
