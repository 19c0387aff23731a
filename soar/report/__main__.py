"""python -m soar.report RUN_DIR [RUN_DIR ...] [--out DIR] [--max-tasks N]"""
from __future__ import annotations

import argparse
from pathlib import Path

from soar.report import NotARunError, build_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m soar.report",
        description="Offline HTML report (report.html + PNGs) of soar search runs, loops or multirun sweeps.")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="a search run dir, a loop dir, or a multirun sweep dir (expanded to its jobs)")
    parser.add_argument("--out", type=Path,
                        help="output dir (default: RUN_DIR/report with one RUN_DIR, ./report with several)")
    parser.add_argument("--max-tasks", type=int, default=6, metavar="N",
                        help="rendered tasks per kind (solved, unsolved) and task set (default: 6)")
    args = parser.parse_args(argv)
    if args.max_tasks < 0:
        parser.error(f"--max-tasks {args.max_tasks}: must be >= 0")
    out = args.out or (args.run_dirs[0] / "report" if len(args.run_dirs) == 1 else Path("report"))
    try:
        path = build_report(args.run_dirs, out, args.max_tasks)
    except NotARunError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"[soar.report] wrote {path}")


if __name__ == "__main__":
    main()
