"""python -m soar.finetune finetune.archives=[<search run dir>,...] [overrides] (= python train.py): one train run on
conf/train.yaml."""
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="../../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from soar.finetune.run import run_train  # heavy imports after Hydra has parsed the command line

    run_train(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
