"""The loudness probe (benchmarks/probe_loudness.py): its regression separates what is separable and not what is
not, its listing count reads traces the way the judge does, and a run dir without 01 gets a clear message."""
import numpy as np

from script_module import load


def _probe():
    return load("benchmarks/probe_loudness.py")


def test_probe_reads_a_level_feature_and_not_noise():
    probe = _probe()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=600)
    noise = rng.standard_normal((600, 16))
    with_level = noise.copy()
    with_level[:, 3] += 4.0 * labels  # one channel carries the class, the rest is noise
    _, test_level = probe.probe_accuracy(with_level, labels)
    _, test_noise = probe.probe_accuracy(noise, labels)
    assert test_level > 0.95
    assert test_noise < 0.5


def test_listing_loudness_counts_words_on_otherwise_right_sounds():
    probe = _probe()
    questions = {
        "a": {"listing": ["loud whistle", "medium car horn"]},
        "b": {"listing": ["quiet dog barking", 'man says "Hi."']},
        "c": {"listing": ["loud whistle"]},
    }
    rows = [
        {"id": "a", "thinking": "I hear: loud whistle; medium car horn\nFirst: whistle\nSo the answer is whistle."},
        {"id": "b", "thinking": 'I hear: loud dog barking; man says "Hi."\nSo the answer is dog barking.'},
        {"id": "c", "thinking": "I hear: loud siren\nSo the answer is siren."},  # a wrong source is not counted
        {"id": "unknown", "thinking": "I hear: loud whistle"},
    ]
    stats = probe.listing_loudness(rows, questions)
    assert stats["check_items"] == 3
    assert stats["listing_exact"] == 1 / 3
    assert stats["sounds_named"] == 3
    assert stats["loudness_right"] == 2 / 3


def test_run_dir_without_a_base_says_what_to_run(tmp_path, capsys):
    probe = _probe()
    assert probe.main(["--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no pretraining world" in err and "--only 01" in err
