"""Search entry point: python search.py [overrides], the same as python -m soar.search. See conf/search.yaml and the
README."""
import runpy

if __name__ == "__main__":
    runpy.run_module("soar.search", run_name="__main__", alter_sys=True)
