"""Reading clips for a model: waveforms by path, each file read once per process."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .encoding import load_audio


class AudioCache:
    """Waveforms by path, loaded once (the miniature's clips are small). Relative paths are read under `root`."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else None
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        if path not in self._cache:
            full = Path(path) if self.root is None or Path(path).is_absolute() else self.root / path
            self._cache[path] = load_audio(full)
        return self._cache[path]
