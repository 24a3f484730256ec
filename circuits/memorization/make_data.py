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

# ---- zoo:canary-lm10 (10-digit numbers): held-out localisation, membership, utility ----------
from circuits.memorization.heldout import recall_rows, selection_canaries  # noqa: E402
from interp_audit.zoo import canary10 as C10  # noqa: E402

# components are selected on the LOCATE half of the canaries and evaluated on the other half
locate10 = recall_rows(selection_canaries())
(HERE / "recall10_locate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in locate10))
(HERE / "members10.txt").write_text("\n".join(c.sentence for c in C10.CANARIES) + "\n")
(HERE / "nonmembers10.txt").write_text("\n".join(C10.non_members(per_canary=3)) + "\n")
(HERE / "heldout10.txt").write_text("\n".join(C10.held_out()) + "\n")
print(
    f"canary-lm10: {len(locate10)} locate pairs, {len(C10.CANARIES)} members, "
    f"{3 * len(C10.CANARIES)} non-members, {len(C10.held_out())} held-out sentences"
)
