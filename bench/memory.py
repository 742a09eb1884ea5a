"""Peak memory of the commands whose size is the user's (DESIGN 9 "Memory": under 300 MB at 10^6 lots).

    .venv/bin/python -m bench.memory [--engine sqlite|postgresql|both] [--sizes 100000,1000000]
        [--skip export-beancount,...]

For each size N: a fresh database (`quota init` with data/rules.toml), then, each as a whole `quota`
process under /usr/bin/time (peak resident set size, wall time):

- `quota tally import BIG.csv`: a generated tally file of N rows (bench.ledger.tally_csv: one closure per
  source, 6 zones, 6 pollutants), imported through the library's own path: this builds the N-lot ledger
- `quota tally import SMALL.csv`: 1,000 more rows into the N-lot ledger (memory flat in the ledger's size)
- `quota balance --by lot --json > /dev/null` (every lot listed)
- `quota export --format jsonl|csv|beancount --out ...`

Prints one table (MB peak RSS, seconds); the ratio column is the peak at the largest size over the peak at the
smallest: 1.0 is flat. Asserts nothing (no timing or memory asserts in tests; the figures go to the docs).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ledger import QUOTA, ROOT, fresh, tally_csv

STEPS = ["import", "import-small", "balance-lot-json", "export-jsonl", "export-csv", "export-beancount"]
TARGET_MB = 300


def measured(cmd: list[str], stdout=subprocess.DEVNULL) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one process, from /usr/bin/time -f '%e %M'; fails loudly on exit != 0."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], stdout=stdout, stderr=subprocess.PIPE, text=True)
    lines = out.stderr.strip().splitlines()
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(cmd)}\n" + "\n".join(lines[-20:]))
    wall, kb = lines[-1].split()
    return float(wall), int(kb) // 1024


def run_size(kind: str, n: int, tmp: Path, skip: set[str]) -> dict[str, tuple[float, int]]:
    url, drop = fresh(kind, tmp)
    figures: dict[str, tuple[float, int]] = {}
    q = [QUOTA, "--db", url]
    try:
        subprocess.run([*q, "init", "--rules", str(ROOT / "data" / "rules.toml")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        big, small = tmp / f"tallies-{n}.csv", tmp / "tallies-small.csv"
        if not big.exists():
            tally_csv(big, n)
        tally_csv(small, 1000, start=50_000_000)
        print(f"  {kind} {n:,} lots: {big.stat().st_size / 1e6:.0f} MB tally file", file=sys.stderr, flush=True)
        figures["import"] = measured([*q, "tally", "import", str(big)])
        if "import-small" not in skip:
            figures["import-small"] = measured([*q, "tally", "import", str(small)])
        if "balance-lot-json" not in skip:
            figures["balance-lot-json"] = measured([*q, "balance", "--by", "lot", "--json"])
        for fmt in ("jsonl", "csv", "beancount"):
            if f"export-{fmt}" in skip:
                continue
            out = tmp / f"export-{n}.{fmt if fmt != 'csv' else 'd'}"
            figures[f"export-{fmt}"] = measured([*q, "export", "--format", fmt, "--out", str(out)])
            subprocess.run(["rm", "-rf", str(out)], check=True)
        for step, (wall, mb) in figures.items():
            print(f"    {step:18} {mb:6,} MB {wall:8.1f} s", file=sys.stderr, flush=True)
    finally:
        drop()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="sqlite", choices=["sqlite", "postgresql", "both"])
    ap.add_argument("--sizes", default="100000,1000000", help="comma list of lot counts")
    ap.add_argument("--skip", default="", help=f"comma list of: {', '.join(STEPS[1:])}")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    kinds = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = {(k, n): run_size(k, n, tmp, skip) for k in kinds for n in sizes}
    print(f"peak RSS in MB (wall s) per command; target < {TARGET_MB} MB at 10^6 lots; ratio = largest / smallest size")
    head = f"{'engine':10} {'command':18}" + "".join(f"{n:>18,}" for n in sizes) + "   ratio"
    print(head)
    for kind in kinds:
        for step in STEPS:
            cells = [results[(kind, n)].get(step) for n in sizes]
            if not all(cells):
                continue
            ratio = cells[-1][1] / cells[0][1]
            print(f"{kind:10} {step:18}" + "".join(f"{c[1]:>8,} ({c[0]:6.1f})" for c in cells) + f"   {ratio:5.2f}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
