"""Bootstrap confidence intervals over items (single system or paired difference)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

def _as_vector(per_item: Mapping[str, float] | Sequence[float]) -> tuple[list[str] | None, np.ndarray]:
    if isinstance(per_item, Mapping):
        keys = sorted(per_item)
        return keys, np.asarray([float(per_item[k]) for k in keys])
    return None, np.asarray(per_item, dtype=float)


def bootstrap_ci(per_item_a: Mapping[str, float] | Sequence[float],
                 per_item_b: Mapping[str, float] | Sequence[float] | None = None,
                 n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Percentile bootstrap over items of accuracy in points; paired (A - B) when a second system is given.

    Per-item values are 0/1 matches (or rubric scores in 0..1); dicts {id: value} are aligned by id."""
    keys_a, a = _as_vector(per_item_a)
    if per_item_b is not None:
        keys_b, b = _as_vector(per_item_b)
        if keys_a is not None and keys_b is not None and keys_a != keys_b:
            raise ValueError("paired bootstrap needs the same item ids in both systems "
                             f"({len(set(keys_a) ^ set(keys_b))} ids differ)")
        if a.shape != b.shape:
            raise ValueError(f"paired bootstrap needs equal lengths, got {a.size} and {b.size}")
        values = a - b
    else:
        values = a
    n = values.size
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one item")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)   # bound memory for large n
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"estimate": 100.0 * float(values.mean()), "low": 100.0 * float(low), "high": 100.0 * float(high),
            "n": int(n), "n_boot": int(n_boot), "alpha": alpha, "seed": seed, "paired": per_item_b is not None}
