"""What a notebook's first cell prints: versions, device and the external tools the kit relies on."""
from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys

HEADLESS_ENV = "COGITO_HEADLESS"  # set by the runner: nobody watches the kernel, its outputs are read later
PACKAGES = ("cogito_lib", "torch", "torchaudio", "transformers", "peft", "accelerate", "numpy", "pandas",
            "seaborn", "papermill", "ipywidgets")


def headless() -> bool:
    """True when the notebook runs unattended (the papermill runner, the nbval tier): views then write their static
    form only (HTML and images a saved notebook keeps) and build no ipywidgets."""
    return os.environ.get(HEADLESS_ENV, "") not in ("", "0")


def set_threads(threads: int) -> int:
    """Use `threads` torch CPU threads (0 = every usable core); return the number in use."""
    import torch

    from .config import num_workers

    torch.set_num_threads(num_workers(threads))
    return torch.get_num_threads()


def tts_engine_version(engine: str = "espeak-ng") -> str | None:
    """The TTS engine's version line, or None when it is not on PATH."""
    exe = shutil.which(engine)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else engine


def environment_report() -> dict:
    """Versions of the stack, the compute device and the TTS engine, as a dict."""
    report = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            report[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            report[name] = None
    try:
        import torch

        report["device"] = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
        report["cpu_threads"] = torch.get_num_threads()
    except ImportError:
        report["device"] = "cpu"
    report["espeak-ng"] = tts_engine_version()
    return report


def show_environment() -> dict:
    """Print the environment report (first cell of every notebook) and return it."""
    report = environment_report()
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value if value is not None else 'MISSING'}")
    return report
