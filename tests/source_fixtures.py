"""Tiny copies of the paper's datasets in their published layouts, written at test time (see cogito_lib.sources).

Each writer makes `n` good clips (short synthetic tones, some at 44.1 kHz stereo), plus, when `broken=True`, one
malformed metadata row and broken audio (a missing file, an empty file and a file of garbage bytes; for the two
YouTube-sourced datasets a missing file is "not downloaded"). It returns a `Fixture` saying what a correct adapter
must find, so tests can check each adapter against it.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

GARBAGE = b"this is not audio at all " * 40
DURATION_SCALE = 1.0  # every clip's length is multiplied by this (benchmarks/bench_sources.py makes them longer)


@dataclass
class Fixture:
    root: Path
    good: int  # items whose audio decodes
    bad_rows: list[tuple[str, int | None]] = field(default_factory=list)  # (file name, line) of malformed rows
    broken: dict[str, int] = field(default_factory=dict)  # failure reason -> count among offered items
    not_downloaded: int = 0  # rows without audio, not offered (YouTube-sourced datasets)

    @property
    def offered(self) -> int:
        return self.good + sum(self.broken.values())


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-0.3 * t)
    return mono.astype(np.float32) if channels == 1 else np.stack([mono, 0.5 * mono], axis=1).astype(np.float32)


def write_audio(path: Path, seconds: float = 0.6, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3"}[path.suffix.lower()]
    sf.write(path, tone(seconds * DURATION_SCALE, rate, channels, freq), rate, format=fmt)
    return path


def write_broken(folder: Path, names: list[str], fixture: Fixture) -> None:
    """names[0]: missing (not written), names[1]: empty, names[2]: garbage bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / names[1]).write_bytes(b"")
    (folder / names[2]).write_bytes(GARBAGE)
    fixture.broken.update({"audio_missing": 1, "audio_empty": 1, "audio_undecodable": 1})


def _csv_text(rows: list[list], delimiter: str = ",") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------

def write_audioset(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    (root / "class_labels_indices.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/0bt9lr,"Dog"\n2,/m/05tny_,"Bark"\n3,/m/07yv9,"Vehicle"\n')
    lines = ["# Segments csv created Sun Mar  5 10:54:25 2017",
             "# num_ytids=9, num_segs=9, num_unique_labels=4, num_positive_labels=12",
             "# YTID, start_seconds, end_seconds, positive_labels"]
    naming = ["{y}", "Y{y}", "{y}_{s}", "Y{y}_{s}_{e}"]  # the stems the adapter accepts
    for i in range(n):
        ytid, start = f"ytGood{i:04d}", 30.0 + i
        lines.append(f'{ytid}, {start:.3f}, {start + 10:.3f}, "/m/0bt9lr,/m/05tny_"')
        stem = naming[i % len(naming)].format(y=ytid, s=f"{start:.3f}", e=f"{start + 10:.3f}")
        rate, channels = (44100, 2) if i == 0 else (16000, 1)
        write_audio(root / "audio" / "balanced_train" / f"{stem}.{'flac' if i % 2 else 'wav'}", rate=rate,
                    channels=channels)
    if broken:
        lines.append('ytNotThere0, 0.000, 10.000, "/m/09x0r"')  # listed, never downloaded
        fx.not_downloaded = 1
        lines.append('ytEmpty0000, 0.000, 10.000, "/m/07yv9"')
        lines.append('ytGarbage00, 0.000, 10.000, "/m/07yv9"')
        (root / "audio" / "balanced_train" / "ytEmpty0000.wav").write_bytes(b"")
        (root / "audio" / "balanced_train" / "ytGarbage00.wav").write_bytes(GARBAGE)
        fx.broken = {"audio_empty": 1, "audio_undecodable": 1}
        lines.append("ytBadRow000, thirty, 40.000, \"/m/09x0r\"")
        fx.bad_rows.append(("balanced_train_segments.csv", len(lines)))
        lines.append('ytNoLabel00, 0.000, 10.000, "/m/unknown"')
        fx.bad_rows.append(("balanced_train_segments.csv", len(lines)))
    (root / "balanced_train_segments.csv").write_text("\n".join(lines) + "\n")
    return fx


def write_clotho(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    split = "development"
    rows = [["file_name"] + [f"caption_{i}" for i in range(1, 6)]]
    meta = [["file_name", "keywords", "sound_id", "sound_link", "start_end_samples", "manufacturer", "license"]]
    for i in range(n):
        name = f"Clip number {i}.wav"
        rows.append([name] + [f"water flows over rocks, take {i} version {k}" for k in range(5)])
        meta.append([name, "water;stream;rocks", str(1000 + i), f"https://freesound.org/s/{1000 + i}",
                     "[0, 100]", "maker", "http://creativecommons.org/licenses/by/3.0/"])
        write_audio(root / split / name, rate=44100 if i == 0 else 16000, channels=2 if i == 0 else 1)
    if broken:
        names = ["missing.wav", "empty.wav", "garbage.wav"]
        for name in names:
            rows.append([name] + ["a sound"] * 5)
        write_broken(root / split, names, fx)
        rows.append(["short row", "only one caption"])
        fx.bad_rows.append((f"clotho_captions_{split}.csv", len(rows)))
    (root / f"clotho_captions_{split}.csv").write_text(_csv_text(rows))
    text = _csv_text(meta).replace("maker", "Caf\u00e9 maker")
    (root / f"clotho_metadata_{split}.csv").write_bytes(text.encode("latin-1"))  # as some releases are
    return fx


def write_audiocaps(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    rows = [["audiocap_id", "youtube_id", "start_time", "caption"]]
    for i in range(n):
        ytid = f"capGood{i:04d}"
        for k in range(2 if i == 0 else 1):  # the first segment has two captions (as in val/test)
            rows.append([str(100 + 10 * i + k), ytid, str(30 + i), f"a dog barks while cars pass ({i}, {k})"])
        stem = [str(100 + 10 * i), ytid, f"Y{ytid}"][i % 3]
        write_audio(root / "audio" / "val" / f"{stem}.wav", rate=44100 if i == 0 else 16000)
    if broken:
        rows.append(["900", "capMissing0", "0", "never downloaded"])
        fx.not_downloaded = 1
        rows.append(["901", "capGarbage0", "0", "garbage"])
        (root / "audio" / "val" / "capGarbage0.wav").write_bytes(GARBAGE)
        fx.broken = {"audio_undecodable": 1}
        rows.append(["902", "capBadStart", "soon", "bad start time"])
        fx.bad_rows.append(("val.csv", len(rows)))
    (root / "dataset").mkdir(parents=True, exist_ok=True)
    (root / "dataset" / "val.csv").write_text(_csv_text(rows))
    return fx


def write_meld(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
              "Episode", "StartTime", "EndTime"]
    rows = [header]
    clips = root / "MELD.Raw" / "dev_splits_complete"
    for i in range(n):
        rows.append([str(i + 1), f"Oh my God, you\u2019re here {i}!", "Rachel" if i % 2 else "Ross",
                     ["Joy", "Surprise", "Neutral"][i % 3], ["positive", "positive", "neutral"][i % 3], "0", str(i),
                     "3", "19", "00:14:15,055", "00:14:17,265"])
        write_audio(clips / f"dia0_utt{i}.wav", rate=44100 if i == 0 else 16000, channels=2 if i == 0 else 1)
    if broken:
        names = ["dia1_utt0.wav", "dia1_utt1.wav", "dia1_utt2.wav"]
        for k in range(3):
            rows.append([str(100 + k), "broken", "Joey", "Anger", "negative", "1", str(k), "3", "19", "x", "y"])
        write_broken(clips, names, fx)  # the missing .wav falls back to the .mp4 name, which is missing too
        rows.append(["200", "video only", "Monica", "Fear", "negative", "2", "0", "3", "19", "x", "y"])
        (clips / "dia2_utt0.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + GARBAGE)  # decodes only via ffmpeg
        reason = "ffmpeg_missing" if shutil.which("ffmpeg") is None else "audio_undecodable"
        fx.broken[reason] = fx.broken.get(reason, 0) + 1
        rows.append(["201", "not a number", "Monica", "Fear", "negative", "two", "0", "3", "19", "x", "y"])
        fx.bad_rows.append(("dev_sent_emo.csv", len(rows)))
    (root / "MELD.Raw").mkdir(parents=True, exist_ok=True)
    (root / "MELD.Raw" / "dev_sent_emo.csv").write_bytes(_csv_text(rows).encode("cp1252"))
    return fx


def write_covost2(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    clips = root / "cv-corpus-4" / "fr" / "clips"
    lines = ["path\tsentence\ttranslation\tclient_id"]
    for i in range(n):
        name = f"common_voice_fr_{1000 + i}.mp3"
        lines.append(f"{name}\tBonjour \\\"tout\\\" le monde {i}.\tHello everyone {i}.\tclient{i}")
        write_audio(clips / name, rate=44100 if i == 0 else 16000, seconds=0.8)
    if broken:
        names = ["common_voice_fr_9001.mp3", "common_voice_fr_9002.mp3", "common_voice_fr_9003.mp3"]
        for name in names:
            lines.append(f"{name}\tCassé.\tBroken.\tclientX")
        write_broken(clips, names, fx)
        lines.append("common_voice_fr_bad.mp3\tonly two fields")
        fx.bad_rows.append(("covost_v2.fr_en.dev.tsv", len(lines)))
    (root / "covost_v2.fr_en.dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return fx


def write_dailytalk(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    base = root / "dailytalk"
    metadata: dict = {"0": {}, "1": {}}
    for i in range(n):
        speaker = i % 2
        wav = base / "data" / "0" / f"{i}_{speaker}_d0.wav"
        write_audio(wav, rate=44100 if i == 0 else 22050)
        wav.with_suffix(".txt").write_text(f"Can I help you with turn {i}?\n")
        metadata["0"][str(i)] = {"text": f"Can I help you with turn {i}?", "speaker": speaker,
                                 "emotion": "no emotion" if i else "happiness", "act": "question", "topic": "work"}
    if broken:
        names = ["0_0_d1.wav", "1_1_d1.wav", "2_0_d1.wav"]
        for k, name in enumerate(names):
            (base / "data" / "1").mkdir(parents=True, exist_ok=True)
            (base / "data" / "1" / name).with_suffix(".txt").write_text("broken turn\n")
            metadata["1"][str(k)] = {"emotion": "anger", "act": "inform"}
        write_broken(base / "data" / "1", names, fx)
        del fx.broken["audio_missing"]  # utterances are listed from the wav files: a missing wav is never seen
        write_audio(base / "data" / "2" / "0_0_d2.wav")
        metadata["2"] = {"0": "not an object"}
        fx.bad_rows.append(("metadata.json", None))
    (base / "metadata.json").write_text(json.dumps(metadata, indent=1))
    return fx


def write_musicbench(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    lines = []
    for i in range(n):
        location = f"data/mb{i:03d}.wav" if i % 2 == 0 else f"data_aug2/mb{i:03d}_up2.wav"
        write_audio(root / "datashare" / location, rate=44100 if i == 0 else 16000, channels=2 if i == 0 else 1)
        lines.append(json.dumps({
            "dataset": "MusicBench", "location": location,
            "main_caption": f"A calm piano piece number {i}.", "alt_caption": f"Calm piano, piece {i}.",
            "prompt_aug": "", "prompt_ch": "The chord sequence is Am, F.", "prompt_bt": "The beat is 3.",
            "prompt_bpm": "This song is in Adagio.", "prompt_key": "This song is in the key of A minor.",
            "beats": [[0.5, 1.1, 1.7, 2.3], [1, 2, 3, 1]], "bpm": 100.0 + i, "chords": ["Am", "F"],
            "chords_time": [0.46, 2.1], "key": ["A", "minor"], "keyprob": [0.8], "is_audioset_eval_mcaps": False}))
    if broken:
        for k, name in enumerate(["missing", "empty", "garbage"]):
            lines.append(json.dumps({"dataset": "MusicBench", "location": f"data/{name}.wav",
                                     "main_caption": "broken", "bpm": None, "key": [], "chords": []}))
        write_broken(root / "datashare" / "data", ["missing.wav", "empty.wav", "garbage.wav"], fx)
        lines.append('{"location": "data/cut.wav", "main_caption": "torn')
        fx.bad_rows.append(("MusicBench_train.json", len(lines)))
    (root / "MusicBench_train.json").write_text("\n".join(lines) + "\n")
    # test A and B list the same audio as each other: one item each
    (root / "MusicBench_test_A.json").write_text(lines[0] + "\n")
    return fx


def write_fma(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    meta = root / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "genres.csv").write_text("genre_id,#tracks,parent,title,top_level\n2,5,0,International,2\n"
                                     "21,8,0,Hip-Hop,21\n811,3,21,Hip-Hop Beats,21\n12,9,0,Rock,12\n")
    groups = ["", "album", "album", "artist", "set", "set", "track", "track", "track", "track", "track"]
    names = ["", "title", "comments", "name", "split", "subset", "genre_top", "genres", "genres_all", "title", "bio"]
    rows = [groups, names, ["track_id"] + [""] * (len(names) - 1)]
    for i in range(n):
        track_id = 2 + i
        rows.append([str(track_id), f"Album {i}", "0", f"Artist {i}", "training", "small",
                     "Hip-Hop" if i % 2 == 0 else "", "[21, 811]" if i % 2 == 0 else "[12]", "[21, 811]",
                     f"Track {i}", "line one\nline two of a bio"])
        write_audio(root / "fma_small" / "000" / f"{track_id:06d}.mp3", seconds=0.8,
                    rate=44100 if i == 0 else 16000, channels=2 if i == 0 else 1)
    if broken:
        for k, track_id in enumerate((140, 141, 142)):
            rows.append([str(track_id), "A", "0", "B", "training", "small", "Rock", "[12]", "[12]", "T", ""])
        write_broken(root / "fma_small" / "000", ["000140.mp3", "000141.mp3", "000142.mp3"], fx)
        rows.append(["150", "A", "0", "B", "training", "large", "Rock", "[12]", "[12]", "T", ""])  # fma_large absent
        fx.not_downloaded = 1
        rows.append(["notanid", "A", "0", "B", "training", "small", "Rock", "[12]", "[12]", "T", ""])
        bad_line = _csv_text(rows[:-1]).count("\n") + 1
        fx.bad_rows.append(("tracks.csv", bad_line))
    (meta / "tracks.csv").write_text(_csv_text(rows))
    return fx


INSTRUMENTS = ["clarinet", "distorted electric guitar", "female singer", "flute", "piano", "tenor saxophone",
               "trumpet", "violin"]


def write_medley_solos_db(root: Path, n: int = 3, broken: bool = True) -> Fixture:
    fx = Fixture(root, good=n)
    rows = [["subset", "instrument", "instrument_id", "song_id", "uuid4"]]
    audio = root / "audio"
    for i in range(n):
        inst = i % len(INSTRUMENTS)
        uuid = f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd"
        rows.append(["training", INSTRUMENTS[inst], str(inst), str(10 + i), uuid])
        write_audio(audio / f"Medley-solos-DB_training-{inst}_{uuid}.wav", rate=44100, seconds=0.7,
                    freq=220.0 * (1 + inst))
    if broken:
        names = []
        for k in range(3):
            uuid = f"9999999{k}-aaaa-bbbb-cccc-dddddddddddd"
            rows.append(["test", "flute", "3", "99", uuid])
            names.append(f"Medley-solos-DB_test-3_{uuid}.wav")
        write_broken(audio, names, fx)
        rows.append(["test", "flute", "three", "99", "bad"])
        fx.bad_rows.append(("Medley-solos-DB_metadata.csv", len(rows)))
    (root / "Medley-solos-DB_metadata.csv").write_text(_csv_text(rows))
    return fx


WRITERS = {"audioset": write_audioset, "clotho": write_clotho, "audiocaps": write_audiocaps, "meld": write_meld,
           "covost2": write_covost2, "dailytalk": write_dailytalk, "musicbench": write_musicbench, "fma": write_fma,
           "medley_solos_db": write_medley_solos_db}


def write_all(base: Path, n: int = 3, broken: bool = True) -> dict[str, Fixture]:
    """Every dataset with an adapter under `base/<name>/`."""
    return {name: writer(base / name, n, broken) for name, writer in WRITERS.items()}


def roots_overrides(fixtures: dict[str, Fixture]) -> dict[str, str]:
    """Profile overrides pointing the dataset roots at the fixtures."""
    return {f"datasets.{name}": str(fx.root) for name, fx in fixtures.items()}
