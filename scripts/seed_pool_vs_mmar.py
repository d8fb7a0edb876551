"""Check the seed pool against MMAR's questions, and write the hash list the tests use instead of MMAR's text.

MMAR's questions are not committed here (licence). To check the seeds, fetch the public benchmark
(github.com/ddlBoJack/MMAR, file MMAR-meta.jsonl) and run:

    python scripts/seed_pool_vs_mmar.py --mmar /path/to/MMAR-meta.jsonl                 # similarity report
    python scripts/seed_pool_vs_mmar.py --mmar /path/to/MMAR-meta.jsonl --write-hashes  # refresh the hash list

The report gives, for each seed, its closest MMAR question by difflib ratio and by word 5-gram Jaccard (both on
normalised text: lower-case, non-alphanumerics collapsed to single spaces), prints the closest seeds, and exits 1
when a seed equals an MMAR question or comes closer than --max-ratio / --max-jaccard.
`--write-hashes` rewrites tests/fixtures/mmar_question_hashes.txt: one sha256 per distinct normalised MMAR question
(`cogito_lib.pipe.annotate.question_hash`), sorted, after a header saying how it was made.
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogito_lib.pipe.annotate import (  # noqa: E402
    word_ngrams, load_seed_pool, normalise_question, question_hash)

HASHES = ROOT / "tests" / "fixtures" / "mmar_question_hashes.txt"
SEEDS = ROOT / "data" / "seed_questions.jsonl"


def mmar_questions(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows]


def write_hashes(questions: list[str], source: Path, out: Path = HASHES) -> int:
    hashes = sorted({question_hash(q) for q in questions})
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    header = [
        "# sha256 of each distinct MMAR question (MMAR-meta.jsonl, github.com/ddlBoJack/MMAR), normalised first:",
        "# lower-case, every run of non-alphanumeric characters (regex [\\W_]+) replaced by one space, stripped;",
        "# hashed as UTF-8 (cogito_lib.pipe.annotate.question_hash). Lets tests check that no seed question copies an",
        "# MMAR question without committing MMAR's text. Made by scripts/seed_pool_vs_mmar.py --write-hashes from",
        f"# {len(questions)} questions ({len(hashes)} distinct); sha256 of that MMAR-meta.jsonl: {digest}",
    ]
    out.write_text("\n".join(header + hashes) + "\n", encoding="utf-8")
    return len(hashes)


def closest(seeds: list[dict], questions: list[str]) -> list[tuple[float, float, dict, str, str]]:
    """(best ratio, best 5-gram Jaccard, seed, question closest by ratio, question closest by Jaccard) per seed."""
    normalised = [normalise_question(q) for q in questions]
    grams = [word_ngrams(q, 5) for q in normalised]
    out = []
    for seed in seeds:
        text = normalise_question(seed["question"])
        seed_grams = word_ngrams(text, 5)
        matcher = difflib.SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(text)
        best_ratio, best_q, best_j, best_jq = 0.0, "", 0.0, ""
        for q, g in zip(normalised, grams):
            matcher.set_seq1(q)
            if matcher.real_quick_ratio() > best_ratio and matcher.quick_ratio() > best_ratio:
                ratio = matcher.ratio()
                if ratio > best_ratio:
                    best_ratio, best_q = ratio, q
            union = seed_grams | g
            j = len(seed_grams & g) / len(union) if union else 0.0
            if j > best_j:
                best_j, best_jq = j, q
        out.append((best_ratio, best_j, seed, best_q, best_jq))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mmar", type=Path, required=True, help="MMAR-meta.jsonl of the public benchmark")
    parser.add_argument("--seeds", type=Path, default=SEEDS, help="seed pool (default: data/seed_questions.jsonl)")
    parser.add_argument("--write-hashes", action="store_true", help=f"rewrite {HASHES.relative_to(ROOT)}")
    parser.add_argument("--max-ratio", type=float, default=0.85, help="fail above this difflib ratio (0.85)")
    parser.add_argument("--max-jaccard", type=float, default=0.5, help="fail above this 5-gram Jaccard (0.5)")
    parser.add_argument("--top", type=int, default=10, help="closest seeds to print")
    args = parser.parse_args(argv)

    questions = mmar_questions(args.mmar)
    if args.write_hashes:
        print(f"{write_hashes(questions, args.mmar)} hashes of {len(questions)} questions -> {HASHES}")
    seeds = load_seed_pool(args.seeds)
    exact = {question_hash(q) for q in questions}
    copies = [s["id"] for s in seeds if question_hash(s["question"]) in exact]
    rows = closest(seeds, questions)
    print(f"{len(seeds)} seeds against {len(questions)} MMAR questions")
    print(f"max difflib ratio {max(r[0] for r in rows):.3f}; max word 5-gram Jaccard {max(r[1] for r in rows):.3f}")
    for ratio, jaccard, seed, q, _ in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)[:args.top]:
        print(f"  {ratio:.3f} {jaccard:.3f} {seed['id']}: {seed['question']!r} ~ {q!r}")
    close = [r[2]["id"] for r in rows if r[0] > args.max_ratio or r[1] > args.max_jaccard]
    if copies or close:
        print(f"FAIL: exact copies {copies}; too close {close}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
