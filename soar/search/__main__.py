"""python -m soar.search [overrides] (= python search.py): one search run on conf/search.yaml."""
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="../../conf", config_name="search", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from soar.search.run import run_search  # heavy imports after Hydra has parsed the command line

    run_search(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
