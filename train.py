"""Train entry point: python train.py finetune.archives=[<search run dir>,...] [overrides], the same as
python -m soar.finetune. See conf/train.yaml."""
import runpy

if __name__ == "__main__":
    runpy.run_module("soar.finetune", run_name="__main__", alter_sys=True)
