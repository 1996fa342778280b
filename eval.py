"""Evaluate a model: ``python eval.py -cn eval_lidar_occ checkpoint=<file>`` (see configs/eval_*.yaml)."""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from utils.evaluation.run import evaluate


@hydra.main(version_base=None, config_path="configs", config_name=None)
def main(cfg: DictConfig) -> None:
    evaluate(cfg, HydraConfig.get().runtime.output_dir)  # output_dir, resolved once (a multirun job: its own)


if __name__ == "__main__":
    main()
