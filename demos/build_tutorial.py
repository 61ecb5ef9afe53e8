"""Build ``demos/toy_world_tutorial.ipynb`` from the cells below (outputs cleared).

Run ``python demos/build_tutorial.py`` after editing; the notebook is generated, so review
changes here. ``tests/e2e/test_tutorial_notebook.py`` executes the result.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from build_notebooks import notebook_of  # demos/ is this script's folder

OUT = Path(__file__).resolve().parent / "toy_world_tutorial.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Circuit tracing on the toy world

This notebook walks through `ct_engine` on the shipped **toy world** model: a 4-layer Llama
(d_model 128, word-level tokenizer) trained from scratch on sentences about an invented world
of 8 countries, their capitals and languages, 32 cities and 64 people
(see `ct_engine/toyworld/MODEL_CARD.md`). Because the world is known, we can check what
attribution finds against the truth.

We will:

1. load the model and its per-layer transcoders by name,
2. attribute a **two-hop** prompt: *"The capital of the country where Mosho lives is"*
   needs the person's country (never named in the prompt) and then its capital,
3. read the pruned graph,
4. find the features that stand for the intermediate entity (the country),
5. intervene on them: ablate them, then swap in another country's features, and generate.

Everything runs offline on a CPU in well under a minute.""",
    ),
    (
        "code",
        """import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

from ct_engine import ReplacementModel, attribute, prune_graph
from ct_engine.toyworld.default_model import load_world

torch.set_num_threads(2)
model = ReplacementModel.from_pretrained("toy-world", "toy-world-plt", device="cpu")
world = load_world()  # the world the model was trained on: entities, facts, prompts
print(model.n_layers, "layers,", model.transcoders.d_transcoder, "features per layer")""",
    ),
    (
        "md",
        """## The prompt and the world's answer

`world.two_hop_prompts(split)` lists the two-hop prompts with their answer and intermediate
entity. We take one whose fact was never stated in training (`heldout_fact`): the model has
to compose *Mosho → country* and *country → capital* itself.""",
    ),
    (
        "code",
        """prompt = next(
    p
    for p in world.two_hop_prompts("heldout_fact")
    if p.subject == "Mosho" and p.relation == "person_capital" and p.template == 0
)
print(prompt.prompt, "->", prompt.answer, "| intermediate entity:", prompt.intermediate)


def top_predictions(logits, k=3):
    probs = torch.softmax(logits[0, -1].double(), -1)
    values, ids = probs.topk(k)
    return [
        (model.tokenizer.decode([int(i)]).strip(), round(float(v), 3))
        for v, i in zip(values, ids, strict=True)
    ]


logits, acts = model.get_activations(prompt.prompt)  # (1, T, V), (L, T, F)
tokens = model.tokenizer.convert_ids_to_tokens(model.ensure_tokenized(prompt.prompt).tolist())
print("tokens:", list(enumerate(tokens)))
print("top predictions:", top_predictions(logits))""",
    ),
    (
        "md",
        """## Attribute and prune

`attribute` builds the attribution graph: nodes are active transcoder features, error nodes,
token embeddings and the output logits; `adjacency_matrix[target, source]` is the direct
effect of the source on the target in the frozen, linearized replacement model.
`prune_graph` keeps the nodes (and edges) that carry 80 % (98 %) of the influence on the
logits.""",
    ),
    (
        "code",
        """graph = attribute(prompt.prompt, model, batch_size=64)
node_mask, edge_mask, cumulative = prune_graph(graph)
targets = zip(graph.logit_targets, graph.logit_probabilities, strict=True)
print("targets:", [(t.token_str, round(float(p), 3)) for t, p in targets])
n_kept = int(node_mask[: graph.n_features].sum())
print("feature nodes:", graph.n_features, "-> kept after pruning:", n_kept)""",
    ),
    (
        "md",
        """## Read the pruned graph

Each kept feature node: its layer, position and token, its activation, and its direct edge
into the answer's logit node (positive = pushes the answer up).""",
    ),
    (
        "code",
        """import pandas as pd

A = graph.dense_adjacency()
answer_node = graph.logit_node(0)  # targets are sorted by probability: the answer first
features = graph.active_features[graph.selected_features]
values = graph.activation_values[graph.selected_features]
rows = []
for i in node_mask[: graph.n_features].nonzero().flatten().tolist():
    layer, pos, feature = features[i].tolist()
    rows.append(
        dict(
            node=i,
            layer=layer,
            pos=pos,
            token=tokens[pos],
            feature=feature,
            activation=round(float(values[i]), 2),
            edge_to_answer=round(float(A[answer_node, i]), 2),
        )
    )
table = pd.DataFrame(rows).sort_values("edge_to_answer", ascending=False)
table""",
    ),
    (
        "md",
        """All kept features sit at the **last position** (`is`). The subject token (`Mosho`)
carries almost no transcoder features in this model: attention moves the name to the last
position, and the lookup *person → country → capital* happens there. A picture of the
pruned graph: nodes at (position, layer), token embeddings at the bottom, the logit on top.""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt


def node_xy(i):
    info = graph.node_info(i)
    if info.kind == "logit":
        return graph.n_pos - 1, graph.n_layers + 0.6
    if info.kind == "token":
        return info.pos, -1
    return info.pos + (0.15 if info.kind == "error" else 0), info.layer


kept = node_mask.nonzero().flatten().tolist()
dense_edges = edge_mask.dense()
fig, ax = plt.subplots(figsize=(9, 4))
for t in kept:
    for s in kept:
        if dense_edges[t, s] and A[t, s] != 0:
            (x0, y0), (x1, y1) = node_xy(s), node_xy(t)
            ax.plot(
                [x0, x1],
                [y0, y1],
                color="tab:blue" if A[t, s] > 0 else "tab:red",
                alpha=0.5,
                lw=0.5 + min(float(abs(A[t, s])), 4),
            )
colors = {"feature": "tab:orange", "error": "tab:gray", "token": "tab:green", "logit": "tab:purple"}
for i in kept:
    x, y = node_xy(i)
    ax.scatter([x], [y], color=colors[graph.node_kind(i)], zorder=3)
ax.set_xticks(range(graph.n_pos), tokens, rotation=45)
ax.set_yticks(range(-1, graph.n_layers + 1), ["emb", *range(graph.n_layers), "logit"])
ax.set_title("pruned graph (orange: features, gray: errors, blue/red: +/- edges)")
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        """## Which features stand for the country?

A feature is a **country-C feature** at a position if, over prompts about *other* people
(every person relation and wording in the world), it fires for at least half of the people
from C and for at most one person of every other country, in at least two wordings
(`ct_engine.toyworld.ground_truth.CountryFeatures`; Mosho's own prompts are left out, so
these features encode the country, not the person).""",
    ),
    (
        "code",
        """from ct_engine.toyworld.ground_truth import (
    SITES,
    CountryFeatures,
    ablation_items,
    correct_prompts,
    donor_for,
    steering_items,
)

country_features = CountryFeatures.build(model, world)  # one batched pass over ~900 prompts
masks = country_features.masks(exclude_subject=prompt.subject)  # (countries, sites, L, F)
last = SITES.index("last")


def country_of_feature(layer, feature):
    hits = masks[:, last, layer, feature].nonzero().flatten().tolist()
    return country_features.countries[hits[0]] if hits else ""


table["country_feature_of"] = [
    country_of_feature(r.layer, r.feature) if r.pos == graph.n_pos - 1 else ""
    for r in table.itertuples()
]
table""",
    ),
    (
        "code",
        """own = ablation_items(model, prompt, country_features)  # active country features
print(f"{prompt.intermediate} features active in this prompt (layer, pos, feature, act):")
for item in own:
    print("  ", item)""",
    ),
    (
        "md",
        """## Intervene: ablate the country

`feature_intervention` sets features to **absolute** activations. With
`freeze_attention=False` nothing is frozen: later layers recompute from the changed
residual stream.""",
    ),
    (
        "code",
        """ablate = [(layer, pos, feature, 0.0) for layer, pos, feature, _ in own]
ablated, _ = model.feature_intervention(prompt.prompt, ablate, freeze_attention=False)
print("clean:  ", top_predictions(logits))
print("ablated:", top_predictions(ablated))""",
    ),
    (
        "md",
        """## Swap in another country

Take a prompt with the same wording about a person from another country (the *donor*), read
its country features, and write them into our prompt at 4× their donor activation while
ablating Mosho's country. The model should now answer the other country's capital.""",
    ),
    (
        "code",
        """eligible = correct_prompts(model, world)  # held-out two-hop prompts the model gets right
donor = donor_for(prompt, world, eligible, model, country_features)
print("donor:", donor.prompt, "->", donor.answer, f"({donor.intermediate})")
swap = steering_items(model, prompt, donor, country_features, scale=4.0)
print("interventions:", swap)
steered, _ = model.feature_intervention(prompt.prompt, swap, freeze_attention=False)
clean_answer = top_predictions(logits)[0][0]
steered_answer = top_predictions(steered)[0][0]
print("clean answer:", clean_answer)
print("steered answer:", steered_answer)
print("expected (donor's capital):", donor.answer)""",
    ),
    (
        "md",
        """`feature_intervention_generate` keeps the interventions on while generating (the
prompt positions keep the written values), so the continuation changes too.""",
    ),
    (
        "code",
        """n_new = 4
clean_text, _, _ = model.feature_intervention_generate(prompt.prompt, [], max_new_tokens=n_new)
steered_text, _, _ = model.feature_intervention_generate(
    prompt.prompt, swap, freeze_attention=False, max_new_tokens=n_new
)
print("clean:  ", clean_text)
print("steered:", steered_text)""",
    ),
    (
        "md",
        """## Where next

* `python -m ct_engine.toyworld.ground_truth` repeats these checks over every held-out
  two-hop prompt the model answers, and compares the graph's predicted effects with the
  observed ones (`ct_engine/toyworld/artifacts/ground_truth.json`).
* `ct attribute` / `ct intervene` do the same from the command line (see `README.md`).""",
    ),
]


def build() -> nbformat.NotebookNode:
    return notebook_of(CELLS, OUT.stem)


def main() -> None:
    nbformat.write(build(), OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
