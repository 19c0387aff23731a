"""Loop entry point: python loop.py iterations=K [overrides], the same as python -m soar.loop. See conf/loop.yaml and
the README."""
import runpy

if __name__ == "__main__":
    runpy.run_module("soar.loop", run_name="__main__", alter_sys=True)
