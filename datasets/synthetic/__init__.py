"""A procedural street world written in the real KITTI-360 and KITTI-Raw on-disk formats.

``python -m datasets.synthetic --out data/synthetic`` generates it; :class:`SyntheticRoot` reloads a
generated root (``world.json``) and answers exact ground-truth queries (occupancy, visibility, depth).
"""

from datasets.synthetic.generate import GeneratorConfig, generate
from datasets.synthetic.root import SyntheticRoot
from datasets.synthetic.world import CastResult, SyntheticWorld, WorldParams

__all__ = ["CastResult", "GeneratorConfig", "SyntheticRoot", "SyntheticWorld", "WorldParams", "generate"]
