"""Reading clips for a model: waveforms by path, each file read (and checked) once per process."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import check_clip
from .encoding import load_audio


class AudioCache:
    """Waveforms by path, loaded once (the miniature's clips are small). Relative paths are read under `root`.

    A clip is checked before it is used: a missing, cut-short or unreadable file, or one whose bytes differ from
    the content hash its stage recorded in its manifest, raises `cogito_lib.io.AudioIntegrityError` (its `kind`
    says which) instead of feeding a model a clip that is not the one its labels describe."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else None
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        if path not in self._cache:
            full = Path(path) if self.root is None or Path(path).is_absolute() else self.root / path
            check_clip(full)
            self._cache[path] = load_audio(full)
        return self._cache[path]
