"""Paper-scale stage 1: the paper's datasets read from local folders, and optional metadata enrichment
(`cogito_lib.sources.enrich`: speech segments, pitch contour, transcripts with offline models).

    from cogito_lib.sources import ADAPTERS, collect_datasets, sampling_plan, dataset_checks

One adapter per dataset (`ADAPTERS`, in the paper's order) reads the dataset's published metadata files under its
root (`profile.datasets.<name>`, env var `COGITO_<NAME>_ROOT`); `collect_datasets` samples the profile's mix into
`RUN_DIR/02-data-collection/` in the same manifest format as the procedural world.
"""
from __future__ import annotations

from cogito_lib.sources.base import Adapter, BadRow, ScanResult, SourceError, SourceItem
from cogito_lib.sources.checks import dataset_checks
from cogito_lib.sources.collect import STAGE_DIR, collect_datasets, scan_datasets
from cogito_lib.sources.plan import PAPER_MIX, mix_weights, paper_weights, quotas, sampling_plan
from cogito_lib.sources.registry import ADAPTERS, DOMAINS, FACT_LAYERS, available, unavailable

__all__ = ["ADAPTERS", "DOMAINS", "FACT_LAYERS", "PAPER_MIX", "STAGE_DIR", "Adapter", "BadRow", "ScanResult",
           "SourceError", "SourceItem", "available", "collect_datasets", "dataset_checks", "mix_weights",
           "paper_weights", "quotas", "sampling_plan", "scan_datasets", "unavailable"]
