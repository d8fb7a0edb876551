"""Cogito-pipe: the paper's four data-curation stages as functions and a CLI (`python -m cogito_lib.pipe`).

Stage 1 (data collection) lives in `cogito_lib.world.collect`; annotate, think and audit follow.
"""
