"""The hiring case: its tables SCM against a hand-written inverse CDF, and its path effects
against a naive loop over the trained model's logits."""

from pathlib import Path

import pytest
import torch
import yaml

import interp_audit as ia
from interp_audit.causal import CausalModel

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parents[2] / "circuits" / "hiring"


@pytest.fixture(scope="module")
def hiring():
    spec = yaml.safe_load((HERE / "audit.yaml").read_text())
    return CausalModel.from_spec(spec["causal"], HERE)


def test_contested_path_counterfactual_by_hand(hiring):
    """Women had they been men, along G -> C -> Y only: the gap token is redrawn from the men's
    row of the table with the same U_C; every other token stays."""
    d = hiring.draw(source="G", value="man", reference="woman", paths=["G -> C -> Y"], n=300)
    p_no_man = 0.90  # P(C = no | man) in scm.yaml
    gap_as_man = ["yes" if u >= p_no_man else "no" for u in d.units.noise["C"].tolist()]
    for clean, cf, gap in zip(d.clean, d.counterfactual, gap_as_man, strict=True):
        c, f = clean.split(), cf.split()
        assert c[0] == f[0] == "gender:woman" and c[1] == f[1] and c[3] == f[3]
        assert f[2] == f"gap:{gap}" and c[2] != f[2]  # kept units changed: yes -> no
    # women whose gap flips (U_C in [0.55, 0.90)): P(yes | woman) - P(yes | man) = 0.35
    assert d.fraction_changed == pytest.approx(0.35, abs=0.03)


def test_path_effect_matches_a_naive_loop(hiring):
    subject = ia.load_model("zoo:hiring")
    cs = hiring.contrast(subject, source="G", value="man", reference="woman", paths="all", n=60)
    yes, no = (subject.answer_token(a)[0] for a in ("hire", "reject"))
    naive = []
    for clean, cf in zip(cs.clean_text, cs.counterfactual_text, strict=True):
        lc = subject.run(torch.tensor([subject.to_tokens(clean)]))[0, -1]
        lf = subject.run(torch.tensor([subject.to_tokens(cf)]))[0, -1]
        naive.append(float((lc[yes] - lc[no]) - (lf[yes] - lf[no])))
    from interp_audit.audit.measure import pair_effects

    c, f = pair_effects(subject, cs, ia.metrics.logit_diff)
    torch.testing.assert_close(
        (c - f).double(), torch.tensor(naive, dtype=torch.float64), atol=1e-4, rtol=0
    )
