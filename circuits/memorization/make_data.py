"""Write the memorization audit's data files from the package's canary corpus definitions.

python circuits/memorization/make_data.py
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from circuits.memorization.unlearning import MATCHED  # noqa: E402
from interp_audit.zoo import canary as C  # noqa: E402

rows = []
for c in C.CANARIES:
    if c.repetitions < 16:
        continue
    digits = c.secret.split()
    for k in range(len(digits)):
        shown = " ".join(digits[:k])
        for other in MATCHED:
            rows.append(
                {
                    "clean": f"{c.prefix} {shown}".strip(),
                    "counterfactual": f"{other} 's pin is {shown}".strip(),
                    "correct": digits[k],
                    "incorrect": str((int(digits[k]) + 1) % 10),
                    "group": c.name,
                }
            )
(HERE / "recall_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
(HERE / "heldout.txt").write_text("\n".join(C.held_out()) + "\n")
print(f"wrote {len(rows)} recall pairs and {len(C.held_out())} held-out sentences")
