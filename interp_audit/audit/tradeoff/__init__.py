"""The repair trade-off across objectives: does repairing one objective break another?

    table = ia.tradeoff("circuits/readmission/audit.yaml", ks=(1, 2, 4, 8, 16, 32),
                        baselines={"zoo:readmission-ftu": ["A"]}, sae="zoo:readmission-attn0")
    table.to_frame(); table.plot(); table.save("out/")

One module a job: :mod:`.repairs` (component and SAE-feature ablations, retrained baselines),
:mod:`.objectives` (what is measured on each repaired model and the row made of it),
:mod:`.table` (the result, its Pareto front and plot), :mod:`.sweep` (the orchestration).
"""

from interp_audit.audit.tradeoff.repairs import Baseline, Repair
from interp_audit.audit.tradeoff.sweep import tradeoff
from interp_audit.audit.tradeoff.table import Tradeoff

__all__ = ["Baseline", "Repair", "Tradeoff", "tradeoff"]
