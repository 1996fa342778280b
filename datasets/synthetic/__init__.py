"""A procedural street world written in the real KITTI-360 and KITTI-Raw on-disk formats.

``python -m datasets.synthetic --out data/synthetic`` generates it; :class:`SyntheticRoot` reloads a
generated root (``world.json``) with the exact world for ground-truth queries
(:meth:`SyntheticWorld.occupied`, :meth:`SyntheticWorld.cast`, depth helpers) and the drive poses
(:mod:`datasets.synthetic.drives`).
"""

from datasets.synthetic.generate import GeneratorConfig, SyntheticRoot, generate
from datasets.synthetic.world import CastResult, SyntheticWorld, WorldParams

__all__ = ["CastResult", "GeneratorConfig", "SyntheticRoot", "SyntheticWorld", "WorldParams", "generate"]
