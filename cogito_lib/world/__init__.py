"""The procedural audio world (miniature stand-in for the paper's ten corpora) and Cogito-pipe stage 1.

    from cogito_lib.world import MODALITIES, LAYERS, FACT_KINDS, generate_clip, collect
"""
from cogito_lib.world.collect import collect
from cogito_lib.world.facts import FACT_KINDS, LAYERS, FactKind
from cogito_lib.world.scenes import MODALITIES, SCENES_BY_MODALITY, clip_id, generate_clip

__all__ = ["MODALITIES", "LAYERS", "FACT_KINDS", "FactKind", "SCENES_BY_MODALITY", "clip_id", "generate_clip",
           "collect"]
