"""Ground truth for attribution: does the graph find the toy world's real two-hop structure?

A two-hop person prompt (``"The capital of the country where Mosho lives is"`` -> ``Ludus``)
needs an intermediate entity that the prompt never names: the person's country. The model can
only represent it at the positions that know the person: the subject token (the name) and the
positions after it, of which the last one predicts the answer. These functions check, against
the world's known facts, that attribution graphs and interventions see that country.

Definitions (all measured with the model's transcoders, nothing is hand-labelled):

* **Sites**: ``"subject"`` (the person's name token) and ``"last"`` (the last prompt token).
* **Reference prompts**: every prompt about a person: one-hop ``person_city`` and
  ``person_country`` and two-hop ``person_capital`` and ``person_language``, in every template
  and split (:func:`person_prompts`). They are grouped by (relation, template), so that every
  group has the same wording and one prompt per person (8 per country).
* **Country-C feature at a site** (:class:`CountryFeatures`): a transcoder feature ``(layer,
  feature)`` that, in at least ``min_groups`` (2) groups, is active (> 0) at that site for at least
  ``min_freq`` (0.5) of the prompts about people from C, and for at most ``max_other``
  (1/8: one person) of the prompts about people from each other country. When the prompt
  under test is about person P, P's own prompts are left out of the reference
  (``exclude_subject``), so a country feature of P is one that fires for *other* people of
  P's country: it encodes the country, not the person.

Experiments, each on two-hop ``person_capital`` prompts from the held-out splits that the
model answers correctly (:func:`correct_prompts`):

1. :func:`graph_check`: attribute the prompt, prune the graph (default thresholds), and count
   the kept feature nodes at the subject and last positions that are country-C features of
   the person's country C (and, as a control, kept nodes that are features of another
   country).
2. :func:`ablation_effect`: set the country-C features active at the two sites to 0 in the
   full model (``freeze_attention=False``: attention, norms and every later feature
   recompute) and measure the drop of the answer's probability. Control: ablate as many
   active non-country features at the same sites.
3. :func:`steering_effect`: ablate them and set the country features of a person from another
   country C' (found active on the same template about that person: the donor prompt, the
   first eligible one with an active country feature, :func:`donor_for`) to
   ``scale`` times their activation on the donor prompt, at the same positions; success when
   the top prediction becomes C''s capital.
4. :func:`prediction_check`: the graph's prediction of the ablation's effect on the answer's
   target (the demeaned logit, ``logit - mean logit``, which is what a graph's logit node
   reads): direct effect ``-Σ A[target, i]`` over the ablated nodes, and total effect through
   the linearized feature-to-feature edges; compared with the observed change under
   ``constrained_layers=all`` (direct effects: equal up to float error), with frozen attention
   and with nothing frozen.

``python -m ct_engine.toyworld.ground_truth --out ct_engine/toyworld/artifacts/ground_truth.json``
runs all four on every eligible prompt and writes the measured effect sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ct_engine.presets import TOY_WORLD_TRANSCODERS
from ct_engine.toyworld.default_model import load_world
from ct_engine.toyworld.world import (
    HELDOUT_FACT,
    HELDOUT_SUBJECT,
    HELDOUT_TEMPLATE,
    FactPrompt,
    TwoHopPrompt,
    World,
)

SITES = ("subject", "last")
REFERENCE_RELATIONS = ("person_city", "person_country", "person_capital", "person_language")
HELDOUT_SPLITS = (HELDOUT_TEMPLATE, HELDOUT_FACT, HELDOUT_SUBJECT)
SCALES = (1.0, 2.0, 3.0, 4.0)

Item = tuple[int, int, int, float]  # (layer, pos, feature, value): a feature intervention


def load_model(transcoders: str = TOY_WORLD_TRANSCODERS, device: str = "cpu"):
    """The shipped toy world model with the named transcoders (default: the toy world's
    default set, :data:`ct_engine.presets.TOY_WORLD_TRANSCODERS`)."""
    from ct_engine import ReplacementModel

    return ReplacementModel.from_pretrained("toy-world", transcoders, device=device)


# -- prompts and positions -------------------------------------------------------------------


def person_prompts(world: World, relations: Sequence[str] = REFERENCE_RELATIONS) -> list:
    """Every prompt (all templates and splits) whose subject is a person, of ``relations``."""
    people = {p.name for p in world.people}
    prompts = world.one_hop_prompts() + world.two_hop_prompts()
    return [p for p in prompts if p.relation in relations and p.subject in people]


def sample_prompt_texts(world: World, n: int) -> list[str]:
    """``n`` distinct person prompt texts, evenly spaced through their sorted list (a fixed,
    varied set of templates, relations and people for tests and benchmarks)."""
    texts = sorted({p.prompt for p in person_prompts(world)})
    return texts[:: max(1, len(texts) // n)][:n]


def positions(model, prompt: FactPrompt) -> dict[str, int]:
    """Token positions of the sites of ``prompt`` (position 0 is the special token)."""
    tokens = model.ensure_tokenized(prompt.prompt).tolist()
    subject_id = model.tokenizer.convert_tokens_to_ids(prompt.subject)
    if tokens.count(subject_id) != 1:
        raise ValueError(f"subject {prompt.subject!r} is not one token of {prompt.prompt!r}")
    return {"subject": tokens.index(subject_id), "last": len(tokens) - 1}


def token_id(model, word: str) -> int:
    """Vocabulary id of a one-token word."""
    ids = model.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{word!r} is not one token")
    return int(ids[0])


def _batches(model, prompts: Sequence[FactPrompt], size: int = 64):
    """Same-length groups of prompts (batched forwards need equal lengths)."""
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(model.ensure_tokenized(p.prompt))].append(i)
    for idx in by_len.values():
        for start in range(0, len(idx), size):
            yield idx[start : start + size]


@torch.no_grad()
def clean_runs(model, prompts: Sequence[FactPrompt]) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-position logits ``(N, V)`` and site activations ``(N, 2, L, F)`` (sites in order
    :data:`SITES`) of ``prompts``, in batches of equal length."""
    L, F = model.n_layers, model.transcoders.d_transcoder
    logits_out: torch.Tensor | None = None
    acts_out = torch.empty(len(prompts), len(SITES), L, F)
    for idx in _batches(model, prompts):
        logits, acts = model.get_activations([prompts[i].prompt for i in idx])  # (B,T,V), (B,L,T,F)
        if logits_out is None:
            logits_out = torch.empty(len(prompts), logits.shape[-1])
        for row, i in enumerate(idx):
            pos = positions(model, prompts[i])
            logits_out[i] = logits[row, -1].float()
            for s, site in enumerate(SITES):
                acts_out[i, s] = acts[row, :, pos[site]].float()
    return logits_out, acts_out


def correct_prompts(
    model,
    world: World,
    splits: Sequence[str] = HELDOUT_SPLITS,
    relation: str = "person_capital",
) -> list[TwoHopPrompt]:
    """Two-hop prompts of ``relation`` in ``splits`` whose greedy next token is the answer."""
    prompts = [p for p in world.two_hop_prompts() if p.relation == relation and p.split in splits]
    logits, _ = clean_runs(model, prompts)
    answers = torch.tensor([token_id(model, p.answer) for p in prompts])
    return [p for p, ok in zip(prompts, logits.argmax(-1) == answers, strict=True) if ok]


# -- country features ----------------------------------------------------------------------


@dataclass
class CountryFeatures:
    """Which features are active at each site of every reference prompt (see module doc).

    Attributes:
        countries: country names, in the world's order.
        active: ``(N, 2, L, F)`` bool, feature active at each site (:data:`SITES`).
        country: ``(N,)`` long, index of each reference prompt's person's country.
        group: ``(N,)`` long, index of its (relation, template) group.
        subjects: the person of each reference prompt.
        min_freq, max_other, min_groups: the selectivity rule (module doc).
    """

    countries: tuple[str, ...]
    active: torch.Tensor
    country: torch.Tensor
    group: torch.Tensor
    subjects: tuple[str, ...]
    min_freq: float = 0.5
    max_other: float = 0.125
    min_groups: int = 2

    @classmethod
    def build(
        cls,
        model,
        world: World,
        min_freq: float = 0.5,
        max_other: float = 0.125,
        min_groups: int = 2,
    ) -> CountryFeatures:
        """Run every reference prompt (:func:`person_prompts`) once and record activity."""
        prompts = person_prompts(world)
        countries = tuple(c.name for c in world.countries)
        country_of = {p.name: countries.index(p.country) for p in world.people}
        groups = sorted({(p.relation, p.template) for p in prompts})
        _, acts = clean_runs(model, prompts)
        return cls(
            countries=countries,
            active=acts > 0,
            country=torch.tensor([country_of[p.subject] for p in prompts]),
            group=torch.tensor([groups.index((p.relation, p.template)) for p in prompts]),
            subjects=tuple(p.subject for p in prompts),
            min_freq=min_freq,
            max_other=max_other,
            min_groups=min_groups,
        )

    def frequencies(self, exclude_subject: str | None = None) -> torch.Tensor:
        """``(G, C, 2, L, F)`` share of each group's prompts about each country's people in
        which a feature is active at a site, leaving out ``exclude_subject``'s prompts."""
        keep = torch.tensor([s != exclude_subject for s in self.subjects])
        n_g, n_c = int(self.group.max()) + 1, len(self.countries)
        cell = (self.group * n_c + self.country)[keep]
        counts = torch.zeros(n_g * n_c, *self.active.shape[1:])
        counts.index_add_(0, cell, self.active[keep].float())
        sizes = torch.bincount(cell, minlength=n_g * n_c).clamp(min=1).float()
        freq = counts / sizes.view(-1, 1, 1, 1)
        return freq.view(n_g, n_c, *self.active.shape[1:])

    def masks(self, exclude_subject: str | None = None) -> torch.Tensor:
        """``(C, 2, L, F)`` bool: country features of each country at each site."""
        freq = self.frequencies(exclude_subject)
        n_c = freq.shape[1]
        out = torch.zeros(freq.shape[1:], dtype=torch.bool)
        for c in range(n_c):
            others = torch.cat([freq[:, :c], freq[:, c + 1 :]], dim=1).amax(dim=1)
            selective = (freq[:, c] >= self.min_freq) & (others <= self.max_other)
            out[c] = selective.sum(dim=0) >= self.min_groups
        return out

    def of(self, country: str, exclude_subject: str | None = None) -> torch.Tensor:
        """``(2, L, F)`` bool: the country features of ``country`` at each site."""
        return self.masks(exclude_subject)[self.countries.index(country)]


def active_country_items(
    acts: torch.Tensor, mask: torch.Tensor, pos: dict[str, int]
) -> list[tuple[int, int, int, float]]:
    """``(layer, pos, feature, activation)`` of the features in ``mask`` ``(2, L, F)`` that
    are active in ``acts`` ``(L, T, F)`` at the sites ``pos``."""
    items = []
    for s, site in enumerate(SITES):
        at = acts[:, pos[site]]
        for layer, f in (mask[s] & (at > 0)).nonzero().tolist():
            items.append((layer, pos[site], f, float(at[layer, f])))
    return items


# -- experiments ---------------------------------------------------------------------------


def _answer_stats(logits: torch.Tensor, answer: int) -> tuple[float, float]:
    """Probability and demeaned logit of ``answer`` at the last position."""
    last = logits.reshape(-1, logits.shape[-1])[-1].double()
    return float(torch.softmax(last, -1)[answer]), float(last[answer] - last.mean())


def graph_check(model, prompt: TwoHopPrompt, features: CountryFeatures) -> dict:
    """Experiment 1: the pruned graph's feature nodes at the subject and last positions."""
    from ct_engine import attribute, prune_graph

    graph = attribute(prompt.prompt, model, batch_size=64)
    node_mask = prune_graph(graph).node_mask
    pos = positions(model, prompt)
    masks = features.masks(prompt.subject)
    own = features.countries.index(prompt.intermediate)
    feats = graph.active_features[graph.selected_features]
    kept = []
    for i in node_mask[: graph.n_features].nonzero().flatten().tolist():
        layer, p, f = feats[i].tolist()
        site = next((s for s in SITES if pos[s] == p), None)
        of = []
        if site is not None:
            s = SITES.index(site)
            of = [features.countries[c] for c in masks[:, s, layer, f].nonzero().flatten()]
        kept.append({"layer": layer, "pos": p, "feature": f, "site": site, "country_of": of})
    own_name = features.countries[own]
    return {
        "prompt": prompt.prompt,
        "n_features": graph.n_features,
        "n_kept": len(kept),
        "kept": kept,
        "kept_at_sites": sum(k["site"] is not None for k in kept),
        "kept_own_country": sum(own_name in k["country_of"] for k in kept),
        "kept_own_country_by_site": {
            s: sum(own_name in k["country_of"] and k["site"] == s for k in kept) for s in SITES
        },
        "kept_other_country": sum(any(c != own_name for c in k["country_of"]) for k in kept),
    }


def ablation_items(model, prompt: TwoHopPrompt, features: CountryFeatures, acts=None):
    """The active country features of ``prompt``'s country at its sites, as
    ``(layer, pos, feature, clean activation)``."""
    if acts is None:
        _, acts = model.get_activations(prompt.prompt)
    return active_country_items(
        acts, features.of(prompt.intermediate, prompt.subject), positions(model, prompt)
    )


def ablation_effect(
    model, prompt: TwoHopPrompt, features: CountryFeatures, control_seed: int = 0
) -> dict:
    """Experiment 2: set the prompt's country features to 0 (nothing frozen)."""
    answer = token_id(model, prompt.answer)
    logits, acts = model.get_activations(prompt.prompt)
    p0, _ = _answer_stats(logits, answer)
    items = ablation_items(model, prompt, features, acts)
    out = {"prompt": prompt.prompt, "n_ablated": len(items), "p_clean": p0}
    if not items:
        out.update(p_ablated=p0, p_control=p0, top_ablated=prompt.answer)
        return out
    zero = [(layer, p, f, 0.0) for layer, p, f, _ in items]
    new, _ = model.feature_intervention(prompt.prompt, zero, freeze_attention=False)
    out["p_ablated"], _ = _answer_stats(new, answer)
    out["top_ablated"] = model.tokenizer.decode([int(new[0, -1].argmax())]).strip()
    # control: as many other active features at the same sites
    pos = positions(model, prompt)
    chosen = {(layer, p, f) for layer, p, f, _ in items}
    pool = [
        (layer, pos[s], f)
        for s in SITES
        for layer, f in (acts[:, pos[s]] > 0).nonzero().tolist()
        if (layer, pos[s], f) not in chosen
    ]
    g = torch.Generator().manual_seed(control_seed)
    pick = torch.randperm(len(pool), generator=g)[: len(items)].tolist()
    control = [(*pool[i], 0.0) for i in pick]
    new, _ = model.feature_intervention(prompt.prompt, control, freeze_attention=False)
    out["p_control"], _ = _answer_stats(new, answer)
    return out


def donor_for(
    prompt: TwoHopPrompt,
    world: World,
    pool: Sequence[TwoHopPrompt],
    model=None,
    features: CountryFeatures | None = None,
) -> TwoHopPrompt | None:
    """A prompt in ``pool`` with ``prompt``'s template about a person from another country.

    Countries are tried in the world's order starting after ``prompt``'s own; with ``model``
    and ``features``, a donor must have at least one active country feature (else there is
    nothing to swap in). None when no prompt qualifies.
    """
    names = [c.name for c in world.countries]
    start = names.index(prompt.intermediate)
    for shift in range(1, len(names)):
        target = names[(start + shift) % len(names)]
        for d in pool:
            if d.template != prompt.template or d.intermediate != target:
                continue
            if model is None or features is None or ablation_items(model, d, features):
                return d
    return None


def steering_items(
    model,
    prompt: TwoHopPrompt,
    donor: TwoHopPrompt,
    features: CountryFeatures,
    scale: float,
) -> list[Item]:
    """Ablate ``prompt``'s country features and write ``donor``'s country features at
    ``scale`` times their donor activations, at the same sites of ``prompt``."""
    own = ablation_items(model, prompt, features)
    theirs = ablation_items(model, donor, features)
    pos, dpos = positions(model, prompt), positions(model, donor)
    site_of = {dpos[s]: s for s in SITES}
    items = {(layer, p, f): 0.0 for layer, p, f, _ in own}
    for layer, p, f, a in theirs:
        items[(layer, pos[site_of[p]], f)] = scale * a
    return [(*k, v) for k, v in items.items()]


def steering_effect(
    model,
    prompt: TwoHopPrompt,
    donor: TwoHopPrompt,
    features: CountryFeatures,
    scales: Sequence[float] = SCALES,
) -> dict:
    """Experiment 3: swap in the donor's country; success per scale when the top
    prediction becomes the donor's answer."""
    target = token_id(model, donor.answer)
    out = {"prompt": prompt.prompt, "donor": donor.prompt, "target": donor.answer, "scales": {}}
    for scale in scales:
        items = steering_items(model, prompt, donor, features, scale)
        logits, _ = model.feature_intervention(prompt.prompt, items, freeze_attention=False)
        top = int(logits[0, -1].argmax())
        p, _ = _answer_stats(logits, target)
        out["scales"][str(scale)] = {
            "success": top == target,
            "p_target": p,
            "top": model.tokenizer.decode([top]).strip(),
            "n_items": len(items),
        }
    return out


def _total_effect(graph, nodes: list[int], target_row: int) -> float:
    """Predicted change of the target when the feature ``nodes`` are set to 0, through the
    linearized feature-to-feature edges (features outside ``nodes`` respond linearly)."""
    S = graph.n_features
    A = graph.dense_adjacency().double()
    acts = graph.activation_values[graph.selected_features].double()
    per_unit = A[:, :S] / acts.clamp(min=1e-12)  # effect of one unit of each feature
    delta = torch.zeros(S, dtype=torch.float64)
    fixed = torch.zeros(S, dtype=torch.bool)
    fixed[nodes] = True
    delta[nodes] = -acts[nodes]
    for _ in range(graph.n_layers + 1):  # a DAG over layers: converges in L steps
        delta = torch.where(fixed, delta, per_unit[:S] @ delta)
    return float(per_unit[target_row] @ delta)


def prediction_check(model, prompt: TwoHopPrompt, features: CountryFeatures) -> dict:
    """Experiment 4: predicted (graph) vs observed change of the answer's demeaned logit
    when the prompt's country features are set to 0."""
    from ct_engine import attribute

    answer = token_id(model, prompt.answer)
    graph = attribute(prompt.prompt, model, batch_size=64)
    ids = [t.vocab_idx for t in graph.logit_targets]
    if answer not in ids:
        return {"prompt": prompt.prompt, "skipped": "answer is not a target"}
    row = graph.logit_node(ids.index(answer))
    items = ablation_items(model, prompt, features)
    feats = graph.active_features[graph.selected_features].tolist()
    index = {tuple(f): i for i, f in enumerate(feats)}
    nodes = [index[(layer, p, f)] for layer, p, f, _ in items]
    A = graph.dense_adjacency().double()
    direct = float(-A[row, nodes].sum())
    total = _total_effect(graph, nodes, row)
    logits, _ = model.get_activations(prompt.prompt)
    _, clean = _answer_stats(logits, answer)
    zero = [(layer, p, f, 0.0) for layer, p, f, _ in items]
    observed = {}
    for name, kwargs in {
        "constrained": {"constrained_layers": range(model.n_layers)},
        "frozen_attention": {"freeze_attention": True},
        "unfrozen": {"freeze_attention": False},
    }.items():
        new, _ = model.feature_intervention(prompt.prompt, zero, **kwargs)
        observed[name] = _answer_stats(new, answer)[1] - clean
    return {
        "prompt": prompt.prompt,
        "n_ablated": len(items),
        "predicted_direct": direct,
        "predicted_total": total,
        "observed": observed,
    }


# -- summary -------------------------------------------------------------------------------


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _corr(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 2:
        return float("nan")
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


def run_all(
    model,
    world: World,
    prompts: Sequence[TwoHopPrompt] | None = None,
    features: CountryFeatures | None = None,
    scales: Sequence[float] = SCALES,
    keep_records: bool = False,
) -> dict:
    """All four experiments on ``prompts`` (default: every correct held-out person_capital
    prompt); returns the summary (and the per-prompt records with ``keep_records``)."""
    features = features or CountryFeatures.build(model, world)
    eligible = correct_prompts(model, world)
    prompts = list(eligible if prompts is None else prompts)
    graphs = [graph_check(model, p, features) for p in prompts]
    ablations = [ablation_effect(model, p, features) for p in prompts]
    steer = []
    for p in prompts:
        donor = donor_for(p, world, eligible, model, features)
        if donor is not None:
            steer.append(steering_effect(model, p, donor, features, scales))
    preds = [prediction_check(model, p, features) for p in prompts]
    preds = [r for r in preds if "skipped" not in r and r["n_ablated"]]

    n = len(prompts)
    drops = [r["p_clean"] - r["p_ablated"] for r in ablations]
    control = [r["p_clean"] - r["p_control"] for r in ablations if r["n_ablated"]]
    direct = [r["predicted_direct"] for r in preds]
    total = [r["predicted_total"] for r in preds]
    obs = {
        k: [r["observed"][k] for r in preds]
        for k in ("constrained", "frozen_attention", "unfrozen")
    }
    summary = {
        "n_prompts": n,
        "splits": sorted({p.split for p in prompts}),
        "graph": {
            "mean_features": _mean(r["n_features"] for r in graphs),
            "mean_kept_features": _mean(r["n_kept"] for r in graphs),
            "mean_kept_at_sites": _mean(r["kept_at_sites"] for r in graphs),
            "share_with_own_country_feature": _mean(r["kept_own_country"] > 0 for r in graphs),
            "share_with_own_country_feature_by_site": {
                s: _mean(r["kept_own_country_by_site"][s] > 0 for r in graphs) for s in SITES
            },
            "mean_kept_own_country_features": _mean(r["kept_own_country"] for r in graphs),
            "share_with_other_country_feature": _mean(r["kept_other_country"] > 0 for r in graphs),
        },
        "ablation": {
            "mean_n_ablated": _mean(r["n_ablated"] for r in ablations),
            "share_with_country_features": _mean(r["n_ablated"] > 0 for r in ablations),
            "mean_p_clean": _mean(r["p_clean"] for r in ablations),
            "mean_p_ablated": _mean(r["p_ablated"] for r in ablations),
            "mean_p_drop": _mean(drops),
            "share_answer_changed": _mean(
                r["top_ablated"] != p.answer for r, p in zip(ablations, prompts, strict=True)
            ),
            "mean_p_drop_control": _mean(control),
        },
        "steering": {
            "n": len(steer),
            "success_rate": {
                str(s): _mean(r["scales"][str(s)]["success"] for r in steer) for s in scales
            },
            "mean_p_target": {
                str(s): _mean(r["scales"][str(s)]["p_target"] for r in steer) for s in scales
            },
        },
        "prediction": {
            "n": len(preds),
            "max_abs_error_constrained_vs_direct": max(
                (abs(a - b) for a, b in zip(direct, obs["constrained"], strict=True)),
                default=float("nan"),
            ),
            "mean_predicted_direct": _mean(direct),
            "mean_predicted_total": _mean(total),
            "mean_observed": {k: _mean(v) for k, v in obs.items()},
            "corr_direct_vs_observed": {k: _corr(direct, v) for k, v in obs.items()},
            "corr_total_vs_observed": {k: _corr(total, v) for k, v in obs.items()},
            "ratio_observed_to_total": {
                k: _mean(v) / _mean(total) if total else float("nan") for k, v in obs.items()
            },
        },
    }
    if keep_records:
        summary["records"] = {
            "graph": graphs,
            "ablation": ablations,
            "steering": steer,
            "prediction": preds,
        }
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--transcoders", default=TOY_WORLD_TRANSCODERS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--records", action="store_true", help="keep per-prompt records")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.transcoders)
    world = load_world()
    features = CountryFeatures.build(model, world)
    result = run_all(model, world, features=features, keep_records=args.records)
    result = {
        "transcoders": args.transcoders,
        "definitions": {
            "sites": list(SITES),
            "reference_relations": list(REFERENCE_RELATIONS),
            "min_freq": features.min_freq,
            "max_other": features.max_other,
            "min_groups": features.min_groups,
            "prompts": "held-out person_capital prompts answered correctly",
            "scales": list(SCALES),
        },
        **result,
        "seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
