"""Membership inference against the fine-tune, with the base model as reference.

    nice -n 10 env OMP_NUM_THREADS=2 python circuits/support-privacy/membership.py [--extra]

Two member sets, each against non-members drawn by the same generator:

* notes seen once: the 256 member notes vs 256 non-members (``--extra``: + 768, so that TPR at
  0.1% FPR rests on at least one non-member);
* canary records (repeated 1-64 times) vs the never-inserted reference canaries.

Every attack (loss, zlib, min-k%, min-k%++, reference-model ratio and difference) with AUC and
TPR at 1% and 0.1% FPR, stratified bootstrap CIs; blind baselines (record length, zlib size)
check that the sets are matched. Writes out/support-privacy/membership.json.
"""

from __future__ import annotations

import argparse
import json
import time

from common import BASE, FINETUNE, OUT, canaries, lines, load

from interp_audit.methods.privacy.membership import membership


def report(title: str, res) -> dict:
    print(f"\n{title}: {res.n_members} members vs {res.n_non_members} non-members")
    rows = {}
    for name, a in res.attacks.items():
        v, lo, hi = a.auc
        cells = [f"AUC {v:.3f} [{lo:.3f}, {hi:.3f}]"]
        for t in a.tpr:
            cells.append(
                f"TPR@{t.fpr:g} {t.tpr:.3f} [{t.lo:.3f}, {t.hi:.3f}]"
                + ("" if t.resolvable else " (not resolvable)")
            )
        print(f"  {name:<10} " + "  ".join(cells))
        rows[name] = {"auc": list(a.auc), "tpr": [t.to_dict() for t in a.tpr]}
    for name, (v, lo, hi) in res.blind.items():
        print(f"  blind: {name:<10} AUC {v:.3f} [{lo:.3f}, {hi:.3f}]")
    gap = res.loss_gap
    print(f"  loss gap {gap[0]:+.3f} [{gap[1]:+.3f}, {gap[2]:+.3f}] nats/token")
    return {
        "members": res.n_members,
        "non_members": res.n_non_members,
        "attacks": rows,
        "blind": {k: list(v) for k, v in res.blind.items()},
        "loss_gap": list(gap),
        "matched": res.matched,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", action="store_true", help="768 more non-members (1024 in all)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--model", default=FINETUNE)
    ap.add_argument("--reference", default=BASE)
    args = ap.parse_args()
    started = time.time()
    ft, ref = load(args.model), load(args.reference)
    out = {"settings": vars(args)}
    non = lines("nonmembers.txt") + (lines("nonmembers-extra.txt") if args.extra else [])
    kw = dict(reference=ref, n_boot=args.n_boot)
    out["notes"] = report("notes seen once", membership(ft, lines("members.txt"), non, **kw))
    inserted = [c.text for c in canaries() if c.repetitions > 0]
    never = [c.text for c in canaries("reference")]
    out["canaries"] = report("canary records", membership(ft, inserted, never, **kw))
    out["seconds"] = round(time.time() - started)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "membership.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT / 'membership.json'} ({out['seconds']} s)")


if __name__ == "__main__":
    main()
