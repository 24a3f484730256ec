"""The repair experiment: selective path repair vs blanket invariance on held-out patients.

python circuits/readmission/repair.py          # prints the table, writes repair.html here
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402

from circuits.readmission.experiment import pareto_plot, repair_table  # noqa: E402

if __name__ == "__main__":
    table = repair_table()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    print(table.round(3).to_string(index=False))
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("repair.html")
    pareto_plot(table).write_html(str(out), include_plotlyjs=True)
    print(f"Pareto plot: {out}")
