"""Feature dashboards: every statistic equals a brute-force recomputation, and on the toy
world the dashboards agree with the world's known facts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ct_engine.features import CorpusSpec, build_dashboards, corpus_texts, toy_world_texts
from ct_engine.features.collect import windows
from ct_engine.features.labels import auto_label
from ct_engine.features.logits import output_effects

ENGLISH = [
    "the capital of Texas is Austin and the river runs south",
    "a cat sat on the mat while the dog slept near the door",
    "numbers one two three four five six seven eight nine ten",
    "the quick brown fox jumps over the lazy dog again and again",
    "rain fell on the city and the streets shone in the evening light",
] * 6


@pytest.fixture(scope="module")
def toy_plt():
    from ct_engine import ReplacementModel

    return ReplacementModel.from_pretrained("toy-world", "toy-world-plt", device="cpu")


@pytest.fixture(scope="module")
def toy_dashboards(toy_plt):
    """The shipped toy world's dashboards over 20,000 tokens of its generated text."""
    spec = CorpusSpec(tokens=20_000)
    return build_dashboards(
        toy_plt, corpus_texts(spec, "toy-world"), max_tokens=spec.tokens, progress=False
    )


def brute_force(model, texts, window, max_tokens):
    """Every window's activations ``(L, T, F)`` from one unbatched run each, cut exactly as
    build_dashboards cuts the corpus."""
    out, counted = [], 0
    for piece in windows(model, texts, window):
        room = max_tokens - counted
        if room <= 0:
            break
        piece = piece[: 1 + room]
        if len(piece) < 2:
            continue
        counted += len(piece) - 1
        _, acts = model.get_activations(piece)
        out.append((piece, acts.float()))
    return out


def small_texts():
    return list(itertools.islice(toy_world_texts(seed=7), 60))


def test_statistics_equal_a_brute_force_recomputation(toy_plt):
    texts = small_texts()
    budget, window = 1_500, 16
    d = build_dashboards(
        toy_plt, texts, max_tokens=budget, window=window, top_k=4, sample_k=6, progress=False
    )
    runs = brute_force(toy_plt, texts, window, budget)
    L, F = d.n_layers, d.d_transcoder
    assert d.n_tokens == budget == sum(len(p) - 1 for p, _ in runs)
    assert d.n_windows == len(runs)

    acts = torch.cat([a[:, 1:] for _, a in runs], dim=1)  # (L, N, F), the special token left out
    tokens = torch.cat([p[1:] for p, _ in runs])
    fired = acts > 0
    np.testing.assert_array_equal(d.n_active, fired.sum(1).numpy())
    np.testing.assert_allclose(d.act_max, acts.amax(1).numpy(), rtol=1e-5, atol=1e-6)
    masked = torch.where(fired, acts, torch.inf).amin(1)
    expected_min = torch.where(fired.any(1), masked, 0.0).numpy()
    np.testing.assert_allclose(d.act_min, expected_min, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d.act_sum, acts.double().sum(1).numpy(), rtol=1e-5, atol=1e-4)

    # Top windows: the k largest per-window peaks, exactly.
    peaks = torch.stack([a[:, 1:].amax(1) for _, a in runs], dim=-1)  # (L, F, n_windows)
    expected_top = peaks.sort(dim=-1, descending=True).values[..., :4].numpy()
    got_top = -np.sort(-np.where(np.isfinite(d.top.keys), d.top.max_act, 0.0), axis=-1)
    np.testing.assert_allclose(got_top, np.maximum(expected_top, 0), rtol=1e-3, atol=1e-3)

    # A stored window holds the feature's real activations on its real tokens.
    layer, feature = np.unravel_index(np.argmax(d.n_active), d.n_active.shape)
    card = d.card(int(layer), int(feature))
    example = card.top_examples[0]
    match = [
        (p, a)
        for p, a in runs
        if [d.vocab[int(i)] for i in p[1:]] == example.tokens
        and abs(float(a[layer, 1:, feature].max()) - example.max_act) < 1e-4
    ]
    assert match, "the top example is not a window of the corpus"
    np.testing.assert_allclose(
        example.acts, match[0][1][layer, 1:, feature].numpy(), rtol=1e-2, atol=1e-2
    )
    assert example.max_pos == int(match[0][1][layer, 1:, feature].argmax())

    # The sample: distinct windows where the feature fired, as many as asked or all of them.
    n_firing_windows = (peaks > 0).sum(-1).numpy()
    n_sampled = np.isfinite(d.sample.keys).sum(-1)
    np.testing.assert_array_equal(n_sampled, np.minimum(n_firing_windows, 6))
    assert (d.sample.max_act[np.isfinite(d.sample.keys)] > 0).all()

    # Input tokens: exact counts of the most frequent firing tokens.
    counts = np.zeros((L, F, toy_plt.d_vocab), dtype=np.int64)
    for layer_ in range(L):
        n, f = fired[layer_].nonzero(as_tuple=True)
        np.add.at(counts[layer_], (f.numpy(), tokens[n].numpy()), 1)
    assert d.input_counts_exact
    ids, got = d.input_token_ids, d.input_token_counts
    valid = ids >= 0
    layer_i, feat_i, _ = np.nonzero(valid)
    np.testing.assert_array_equal(got[valid], counts[layer_i, feat_i, ids[valid]])
    best = np.sort(counts, axis=-1)[..., ::-1][..., : ids.shape[-1]]
    np.testing.assert_array_equal(np.where(valid, got, 0), best)

    # Quantiles from the streamed histogram are within one fine bin of the exact ones.
    values = acts[layer][:, feature][fired[layer][:, feature]].numpy()
    exact = np.quantile(values, card.quantile_levels, method="inverted_cdf")
    ratio = d.hist_edges[2] / d.hist_edges[1]
    np.testing.assert_array_less(np.abs(np.log(card.quantile_values / exact)), np.log(ratio) + 1e-6)
    assert sum(card.histogram_counts) == card.n_active


def test_output_effects_follow_the_final_norm_and_unembedding(toy_plt):
    top_ids, top_vals, bottom_ids, bottom_vals = output_effects(toy_plt, n=5)
    gamma = toy_plt.impl.hf_model.get_decoder().norm.weight.detach().float()
    W_U = toy_plt.impl.unembedding.float()
    for layer, f in [(0, 3), (3, 100), (2, 1023)]:
        effect = (toy_plt.transcoders.decoder_weight(layer)[f].float() * gamma) @ W_U
        expected = effect.topk(5)
        np.testing.assert_array_equal(top_ids[layer, f].numpy(), expected.indices.numpy())
        np.testing.assert_allclose(top_vals[layer, f], expected.values, rtol=1e-5, atol=1e-6)
        assert bottom_ids[layer, f, 0] == int(effect.argmin())
        assert bottom_vals[layer, f, 0] == pytest.approx(float(effect.min()), rel=1e-5)


def test_cross_layer_effects_sum_the_written_layers():
    from ct_engine import ReplacementModel

    clt = ReplacementModel.from_pretrained("toy-world", "toy-world-clt", device="cpu")
    top_ids, top_vals, _, _ = output_effects(clt, n=3)
    gamma = clt.impl.hf_model.get_decoder().norm.weight.detach().float()
    decoder = clt.transcoders.decoder_vectors(1, torch.tensor([7]))[0].float()  # (3, D)
    assert decoder.shape[0] == 3
    effect = (decoder.sum(0) * gamma) @ clt.impl.unembedding.float()
    np.testing.assert_allclose(top_vals[1, 7], effect.topk(3).values, rtol=1e-5, atol=1e-6)


def test_gemma_norm_convention_and_both_backends_agree(tiny_model_dir, transcoder_dir):
    """Gemma's RMSNorm scales by ``1 + w``; the nnsight and TransformerLens backends give the
    same dashboards."""
    from ct_engine import ReplacementModel

    models = {
        backend: ReplacementModel.from_pretrained(
            tiny_model_dir("gemma2"), transcoder_dir("gemma2", "plt_jumprelu"), backend=backend
        )
        for backend in ("transformerlens", "nnsight")
    }
    built = {
        name: build_dashboards(
            model, ENGLISH, max_tokens=300, window=12, top_k=3, sample_k=3, progress=False
        )
        for name, model in models.items()
    }
    tl, nn = built["transformerlens"], built["nnsight"]
    assert tl.n_tokens == nn.n_tokens == 300
    np.testing.assert_allclose(tl.act_max, nn.act_max, rtol=1e-4, atol=1e-5)
    assert np.abs(tl.n_active - nn.n_active).max() <= 2  # threshold ties under float error
    np.testing.assert_array_equal(tl.top_logit_ids, nn.top_logit_ids)

    model = models["transformerlens"]
    weight = model.impl.hf_model.get_decoder().norm.weight.detach().float()
    effect = (model.transcoders.decoder_weight(1)[5].float() * (1 + weight)) @ (
        model.impl.unembedding.float()
    )
    np.testing.assert_allclose(tl.top_logit_values[1, 5], effect.topk(10).values, rtol=1e-4)


def test_toy_world_country_features_read_and_write_their_country(toy_dashboards):
    """Features the toy world's ground truth calls country-C features fire in contexts about
    C (a person, city, capital, language or C itself in the sentence up to the marked token),
    and their top logits hold C's capital or language far more often than another country's."""
    from ct_engine.toyworld.default_model import load_world

    world = load_world()
    entities = {
        c.name: {c.name, c.capital, c.language, *c.cities}
        | {p.name for p in world.people if p.country == c.name}
        for c in world.countries
    }
    d = toy_dashboards
    truth = list(zip(*np.nonzero(d.label_sources == "truth"), strict=True))
    assert len(truth) >= 20
    own_context, own_logit, other_logit = [], [], []
    for layer, f in truth:
        card = d.card(int(layer), int(f))
        country = world.country(card.label)
        assert card.label_source == "truth" and card.n_active > 0
        hits = 0
        for example in card.top_examples:
            upto = [t.strip() for t in example.tokens[: example.max_pos + 1]]
            stops = [i for i, t in enumerate(upto[:-1]) if t == "."]
            sentence = upto[(stops[-1] + 1 if stops else 0) :]
            hits += any(t in entities[country.name] for t in sentence)
        own_context.append(hits / len(card.top_examples))
        logits = {token.strip() for token, _ in card.top_logits}
        for other in world.countries:
            hit = other.capital in logits or other.language in logits
            (own_logit if other.name == country.name else other_logit).append(hit)
    own_context = np.array(own_context)
    assert own_context.mean() >= 0.75
    assert (own_context >= 0.5).mean() >= 0.8
    assert np.mean(own_logit) >= 0.5
    assert np.mean(own_logit) >= 4 * np.mean(other_logit)


def test_cards_hold_what_a_researcher_reads(toy_dashboards):
    d = toy_dashboards
    layer, feature = np.unravel_index(np.argmax(d.n_active), d.n_active.shape)
    card = d.card(int(layer), int(feature))
    assert card.frequency == pytest.approx(card.n_active / d.n_tokens)
    assert 0 < card.act_min <= card.quantile_values[3] <= card.act_max
    assert card.quantile_values == sorted(card.quantile_values)
    assert len(card.histogram_edges) == len(card.histogram_counts) + 1
    assert card.groups[0].name == "Top activations"
    assert [e.max_act for e in card.top_examples] == sorted(
        [e.max_act for e in card.top_examples], reverse=True
    )
    assert card.top_examples[0].max_act == pytest.approx(card.act_max, rel=1e-3)
    assert len(card.groups) > 1 and all(g.name.startswith("Quantile") for g in card.groups[1:])
    assert card.label and card.label_source in ("auto", "truth")
    if card.label_source == "auto":
        assert card.label == auto_label(card)
    record = card.to_circuit_tracer()
    assert record["index"] == feature and record["act_max"] == card.act_max
    assert record["top_logits"] == [t for t, _ in card.top_logits]
    example = record["examples_quantiles"][0]["examples"][0]
    assert (
        example["tokens"][example["train_token_ind"]]
        == card.top_examples[0].tokens[card.top_examples[0].max_pos]
    )

    dead = np.argwhere(d.n_active == 0)
    if len(dead):
        empty = d.card(*map(int, dead[0]))
        assert empty.n_active == 0 and empty.groups == [] and empty.label == ""


def test_auto_labels_name_the_token_or_context_and_the_top_logit(toy_dashboards):
    d = toy_dashboards
    labelled = np.argwhere(d.label_sources == "auto")
    assert len(labelled) > 1000
    for layer, f in labelled[:: max(1, len(labelled) // 50)]:
        card = d.card(int(layer), int(f))
        assert card.label == auto_label(card)
        assert f"\u2192 {card.top_logits[0][0].strip()}" in card.label


def test_an_explainer_labels_features_but_never_overrides_the_truth(toy_plt):
    seen = []

    def explainer(card):
        seen.append((card.layer, card.feature))
        return f"explained {card.top_examples[0].tokens[card.top_examples[0].max_pos]}"

    d = build_dashboards(
        toy_plt, small_texts(), max_tokens=1_000, window=16, explainer=explainer, progress=False
    )
    sources = d.label_sources
    assert (sources == "explainer").sum() > 100 and (sources == "truth").sum() > 0
    assert len(seen) == (sources == "explainer").sum()
    layer, f = map(int, np.argwhere(sources == "explainer")[0])
    assert d.card(layer, f).label.startswith("explained ")


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "the corpus is empty"),
        (["", "   "], "the corpus is empty"),
        (["Mosho lives in Ludus ."], "shorter than one context window"),
    ],
)
def test_bad_corpora_give_one_line(toy_plt, texts, message):
    with pytest.raises(ValueError, match=message) as err:
        build_dashboards(toy_plt, texts, max_tokens=100, window=32, progress=False)
    assert "\n" not in str(err.value)


def test_out_of_range_features_give_one_line(toy_dashboards):
    with pytest.raises(ValueError, match="layer 4 is out of range: the set has layers 0..3"):
        toy_dashboards.card(4, 0)
    with pytest.raises(ValueError, match="feature 1024 is out of range"):
        toy_dashboards.card(0, 1024)


def test_memory_is_bounded_by_features_not_by_the_corpus(toy_plt):
    """The kept state has the same size after 500 and after 2,000 tokens."""
    sizes = []
    for budget in (500, 2_000):
        d = build_dashboards(
            toy_plt, toy_world_texts(seed=3), max_tokens=budget, window=16, progress=False
        )
        arrays = [d.hist, d.top.tokens, d.top.acts, d.sample.tokens, d.sample.acts, d.n_active]
        sizes.append(sum(a.nbytes for a in arrays))
    assert sizes[0] == sizes[1]
