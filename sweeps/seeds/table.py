"""The table of the seed sweeps: per notebook and run, whether every range check held, and the failing one if not.

    .venv/bin/python sweeps/seeds/table.py          # after running the sweeps/seeds/*.yaml files
"""

import re
import sys
from pathlib import Path

import yaml

from ibcore.batch import load_sweep, read_result

HERE = Path(__file__).resolve().parent


def rows():
    for spec in sorted(HERE.glob("*.yaml")):
        runs, _ = load_sweep(spec)
        for run in runs:
            res = read_result(run.folder)
            seeds = {k: v for k, v in run.parameters.items() if "seed" in k}
            if res is None:
                yield spec.stem, seeds, "not run", ""
            elif res["status"] == "ok":
                yield spec.stem, seeds, "every check holds", f"{res['seconds']:.0f} s"
            else:
                first = re.sub(r"\s+", " ", res["error"] or "")[:160]
                yield spec.stem, seeds, "FAILS", first


def main() -> int:
    table = list(rows())
    print("| notebook | seeds | checks | |\n| --- | --- | --- | --- |")
    for name, seeds, status, detail in table:
        print(f"| {name} | {yaml.safe_dump(seeds, default_flow_style=True).strip()} | {status} | {detail} |")
    return 0 if all(s == "every check holds" for _, _, s, _ in table) else 1


if __name__ == "__main__":
    sys.exit(main())
