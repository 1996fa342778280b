"""Train BTS: ``python train.py -cn train_kitti_360_bts`` (see configs/ and utils/training/train.py)."""

import hydra
from omegaconf import DictConfig

from utils.config import register_resolvers
from utils.training.train import train

register_resolvers()  # before Hydra composes: trainer.output_dir uses ${run_dir:...}


@hydra.main(version_base=None, config_path="configs", config_name=None)
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
