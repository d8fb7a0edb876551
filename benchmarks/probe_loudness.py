#!/usr/bin/env python
"""Where is loudness lost? A linear probe of each foreground sound's loudness class along the base's audio path,
beside how often the base itself names it right.

    python benchmarks/probe_loudness.py --run-dir runs/mini            # the base 01 trained in that run dir
    python benchmarks/probe_loudness.py --run-dir runs/mini --clips 800

For every foreground sound event of the pretraining world (01's `pretrain-world`), the features of its frames
are averaged at three points: the log-mel input, the frozen Whisper front-end's output (after its final layer
norm) and the trained projector's output (what the text model reads). A softmax regression is fitted on 70% of
the events and scored on the other 30%. If the front-end's output still separates quiet / medium / loud, a base
that names loudness wrongly has not learned to read it: the fix is training, not a new audio cue.

The second figure is the base's own: from 01's held-out check set (`check.jsonl`, greedy traces), the share of
listed foreground sounds whose loudness word is right, among those it names correctly otherwise, and how many
listings are exactly right (the metadata judge requires that).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogito_lib.world.skills import LOUDNESS_ORDER as LOUDNESS  # noqa: E402  (quiet, medium, loud: the world's classes)

FRAMES_PER_S = 25  # the Qwen2-Audio tower's output rate (100 mel frames/s, conv stride 2, pooling 2)


def event_features(model, processor, clips: list[dict], world_dir: Path):
    import soundfile as sf
    import torch

    inner = model.model if hasattr(model, "model") else model
    tower, projector = inner.audio_tower, inner.multi_modal_projector
    feats: dict[str, list] = {"log-mel input": [], "front-end output": [], "projector output": []}
    labels = []
    for clip in clips:
        wave, sr = sf.read(world_dir / clip["audio_path"], dtype="float32")
        inputs = processor.feature_extractor(wave, sampling_rate=sr, return_tensors="pt")
        with torch.no_grad():
            out = tower(inputs.input_features).last_hidden_state[0]
            proj = projector(out)
        mel = inputs.input_features[0].T
        for e in clip["events"]:
            if e.get("role") != "foreground" or e["kind"] != "sound":
                continue
            a = int(e["onset_s"] * FRAMES_PER_S)
            b = max(int(e["offset_s"] * FRAMES_PER_S), a + 1)
            if b > out.shape[0]:
                continue
            feats["log-mel input"].append(mel[4 * a:4 * b].mean(0).numpy())
            feats["front-end output"].append(out[a:b].mean(0).numpy())
            feats["projector output"].append(proj[a:b].mean(0).numpy())
            labels.append(LOUDNESS.index(e["loudness"]))
    return {k: np.stack(v) for k, v in feats.items()}, np.array(labels)


def probe_accuracy(x: np.ndarray, y: np.ndarray, seed: int = 0, steps: int = 500) -> tuple[float, float]:
    """Train/test accuracy of a softmax regression (L2-regularised, full-batch LBFGS) on standardised features."""
    import torch

    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.7 * len(y))
    train, test = order[:cut], order[cut:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    xt = torch.tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y)
    torch.manual_seed(seed)
    layer = torch.nn.Linear(x.shape[1], len(LOUDNESS))
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xt[train]), yt[train]) + 1e-3 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = layer(xt).argmax(1)
    return float((pred[train] == yt[train]).float().mean()), float((pred[test] == yt[test]).float().mean())


def listing_loudness(check_rows: list[dict], questions: dict[str, dict]) -> dict:
    """How the base names loudness in its greedy listings (01's check set)."""
    from cogito_lib.world.skills import parse_reasoning  # the judge's own reading of a trace

    right = wrong = exact = total = 0
    for row in check_rows:
        q = questions.get(row["id"])
        if q is None:
            continue
        total += 1
        got = parse_reasoning(row.get("thinking") or "").listing
        exact += got == q["listing"]
        if not got or len(got) != len(q["listing"]):
            continue
        for said, true in zip(got, q["listing"]):
            if true.split(" ")[0] in LOUDNESS and said.split(" ", 1)[-1] == true.split(" ", 1)[-1]:
                right += said.split(" ")[0] == true.split(" ")[0]
                wrong += said.split(" ")[0] != true.split(" ")[0]
    named = right + wrong
    return {"check_items": total, "listing_exact": exact / max(total, 1),
            "loudness_right": right / max(named, 1), "sounds_named": named}


def main(argv: list[str] | None = None) -> int:
    from cogito_lib.config import load_profile
    from cogito_lib.base_model import check_set
    from cogito_lib.layout import BASE as STAGE
    from cogito_lib.layout import base_model_path
    from cogito_lib.io import read_jsonl
    from cogito_lib.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="runs/mini", help="a run dir where 01 has trained the base")
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--clips", type=int, default=500, help="pretraining clips to probe (default 500)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    profile = load_profile(args.profile)
    world_dir = run_dir / STAGE / "pretrain-world"
    if not (world_dir / "manifest.jsonl").exists():
        print(f"no pretraining world in {world_dir}: run notebook 01 for this run dir first "
              f"(python -m cogito_lib.run --profile {args.profile} --run-dir {run_dir} --only 01)", file=sys.stderr)
        return 2
    model, processor = load_model(base_model_path(profile, run_dir))
    clips = read_jsonl(world_dir / "manifest.jsonl")[: args.clips]
    feats, labels = event_features(model, processor, clips, world_dir)
    counts = {name: int((labels == i).sum()) for i, name in enumerate(LOUDNESS)}
    print(f"{len(labels)} foreground sounds from {len(clips)} clips: {counts}; majority class "
          f"{max(counts.values()) / len(labels):.1%}")
    print(f"{'probe point':<20} {'dims':>5} {'train':>7} {'test':>7}")
    for name, x in feats.items():
        train_acc, test_acc = probe_accuracy(x, labels)
        print(f"{name:<20} {x.shape[1]:>5} {train_acc:>7.1%} {test_acc:>7.1%}")
    check_path = run_dir / STAGE / "check.jsonl"
    if check_path.exists():
        questions = {q["id"]: q for q in check_set(profile, run_dir, progress=False)}
        stats = listing_loudness(read_jsonl(check_path), questions)
        print(f"the base's greedy listings on {stats['check_items']} check items: {stats['listing_exact']:.1%} "
              f"exactly right; loudness word right for {stats['loudness_right']:.1%} of "
              f"{stats['sounds_named']} otherwise-correct sounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
