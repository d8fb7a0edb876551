"""`--plan` checks for the paper's datasets: is each planned dataset's root set, and does its adapter find the
metadata files there (a cheap probe: file names only, no rows, no audio)."""
from __future__ import annotations

from pathlib import Path

from cogito_lib.config import DATASET_ENV, ConfigError, Profile

from .plan import mix_weights, quotas
from .registry import ADAPTERS


def dataset_checks(profile: Profile) -> list[tuple[str, bool, str]]:
    """(name, ok, message) per dataset of the mix, in the paper's order; a bad collect.mix is one failed check."""
    try:
        planned = quotas(mix_weights(profile), profile.collect.num_clips)
    except ConfigError as err:
        return [("collect.mix", False, str(err))]
    checks = []
    for name, adapter in ADAPTERS.items():
        label, var, root = f"dataset {name}", DATASET_ENV[name], getattr(profile.datasets, name)
        if not adapter.available:
            checks.append((label, True, f"not collected ({adapter.unavailable_reason})"))
            continue
        if planned[name] == 0:
            checks.append((label, True, "weight 0 in collect.mix: not needed" + (f" ({var}={root})" if root else "")))
            continue
        wants = f"{planned[name]} clip(s) planned"
        if not root:
            checks.append((label, False, f"root not set: export {var}=/path/to/{name} ({wants}; download "
                                         f"{adapter.download} from {adapter.url})"))
        elif not Path(root).is_dir():
            checks.append((label, False, f"{var}={root} is not a folder ({wants})"))
        else:
            ok, message = adapter.probe(root)
            checks.append((label, ok, f"{var}={root}: {message} ({wants})"))
    return checks
