"""Cells of ``demos/circuit_tracing_tutorial.ipynb``: read a two-hop circuit, then test it."""

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Circuit tracing tutorial

circuit-tracer's tutorial traces a two-hop fact in Gemma-2 (*"the capital of the state
containing Dallas is"* → Texas → Austin), groups the graph's features into supernodes, and
tests the story by intervening on them. This notebook does the same on the toy world
(`ct_engine/toyworld/MODEL_CARD.md`), where the facts are known, so each step can be checked:

1. attribute *"The capital of the country where Mosho lives is"* (Mosho → Soubathia → Ludus);
2. read the pruned graph: which nodes matter, and which inputs feed them;
3. ask what the central features stand for, by their activations on other prompts;
4. check that they recur when the question is worded differently;
5. ablate them on every wording and watch the answer go.

The toy world's other tutorial, `toy_world_tutorial.ipynb`, uses its ground-truth
definitions instead; `intervention_demo.ipynb` swaps one country for another.""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt
import pandas as pd
import torch

from ct_engine import ReplacementModel, attribute, prune_graph
from ct_engine.toyworld.default_model import load_world
from ct_engine.utils.demo_utils import get_topk

model = ReplacementModel.from_pretrained("toy-world", "toy-world-clt", device="cpu")
world = load_world()
prompt = "The capital of the country where Mosho lives is"
tokens = model.to_str_tokens(prompt)
graph = attribute(prompt, model, batch_size=64)
answer = graph.logit_targets[0]
print(f"the answer: {answer.token_str} (p = {float(graph.logit_probabilities[0]):.3f})")""",
    ),
    (
        "md",
        """## Read the pruned graph

Pruning keeps the nodes that carry 80 % of the influence on the logits (and the edges that
carry 98 %). Each kept node: its kind (feature, error node, token), layer and position, its
influence on the answer (direct and through other nodes) and its direct edge into the
answer's logit.""",
    ),
    (
        "code",
        """from ct_engine.graph import compute_node_influence, target_weights

node_mask, edge_mask, _ = prune_graph(graph)
A = graph.dense_adjacency()
influence = compute_node_influence(graph.adjacency_matrix, target_weights(graph))
answer_node = graph.logit_node(0)
rows = []
for i in node_mask.nonzero().flatten().tolist():
    info = graph.node_info(i)
    if info.kind == "logit":
        continue
    rows.append(
        dict(
            node=i,
            kind=info.kind,
            layer=info.layer if info.kind != "token" else "emb",
            pos=info.pos,
            token=tokens[info.pos],
            feature=info.feature if info.kind == "feature" else "",
            influence=round(float(influence[i]), 3),
            edge_to_answer=round(float(A[answer_node, i]), 2),
        )
    )
table = pd.DataFrame(rows).sort_values("influence", ascending=False).head(10)
table""",
    ),
    (
        "md",
        """The most influential features sit at the last position (*is*), where the answer is
read out. What feeds them? A feature's row of the adjacency matrix lists its inputs: the
direct effect of every token, error node and earlier feature on its pre-activation.""",
    ),
    (
        "code",
        """central = [
    i
    for i in table.node
    if graph.node_kind(i) == "feature" and graph.node_info(i).pos == len(tokens) - 1
]


def name(i):
    info = graph.node_info(i)
    if info.kind == "token":
        return f"token {tokens[info.pos]!r}"
    if info.kind == "error":
        return f"error L{info.layer} @ {tokens[info.pos]!r}"
    return f"feature L{info.layer} #{info.feature} @ {tokens[info.pos]!r}"


for i in central:
    inputs = A[i].clone()
    top = inputs.abs().topk(3).indices.tolist()
    feeds = ", ".join(f"{name(j)} {float(inputs[j]):+.2f}" for j in top)
    print(f"{name(i)} <- {feeds}")
    print(f"    -> logit {answer.token_str!r} {float(A[answer_node, i]):+.2f}")""",
    ),
    (
        "md",
        """## What do the central features stand for?

Ask the same question about each of the world's 64 people and read the central features'
activations at the last position, averaged over the people of each country. Features that
stand for *Soubathia* fire for Soubathia's people only; features for *Mosho* would fire on
his prompt alone; features for *capital* would fire everywhere.""",
    ),
    (
        "code",
        """countries = [c.name for c in world.countries]
central_features = [graph.node_info(i) for i in central]
activation = torch.zeros(len(central_features), len(countries))
count = torch.zeros(len(countries))
for person in world.people:
    _, acts = model.get_activations(prompt.replace("Mosho", person.name))
    c = countries.index(person.country)
    count[c] += 1
    for k, f in enumerate(central_features):
        activation[k, c] += acts[f.layer, -1, f.feature]
activation /= count

fig, ax = plt.subplots(figsize=(7, 1.8 + 0.4 * len(central_features)))
image = ax.imshow(activation, cmap="Greens", aspect="auto")
ax.set_xticks(range(len(countries)), countries, rotation=45, ha="right")
ax.set_yticks(range(len(central_features)), [f"L{f.layer} #{f.feature}" for f in central_features])
ax.set_title("mean activation at 'is', by the person's country")
fig.colorbar(image, ax=ax)
plt.tight_layout()
plt.show()
mosho_country = next(p.country for p in world.people if p.name == "Mosho")
for k, f in enumerate(central_features):
    top_country = countries[int(activation[k].argmax())]
    print(f"L{f.layer} #{f.feature} fires most for the people of {top_country}")
print(f"(Mosho lives in {mosho_country})")""",
    ),
    (
        "md",
        """## Do they recur in other wordings?

The toy world asks the same two-hop question in several templates. If the features carry
the country, they should be active at the last position of every wording about Mosho.""",
    ),
    (
        "code",
        """wordings = [
    p for p in world.two_hop_prompts() if p.subject == "Mosho" and p.relation == "person_capital"
]
rows = []
for p in wordings:
    _, acts = model.get_activations(p.prompt)
    row = {"prompt": p.prompt, "answer": p.answer}
    for f in central_features:
        row[f"L{f.layer} #{f.feature}"] = round(float(acts[f.layer, -1, f.feature]), 2)
    rows.append(row)
pd.DataFrame(rows)""",
    ),
    (
        "md",
        """## Test it: ablate the country

If the story is right, switching the country features off should take the answer away in
every wording, not only in the prompt we traced. `feature_intervention` sets them to 0 at the
last position (circuit-tracer's semantics: absolute values; attention patterns frozen).""",
    ),
    (
        "code",
        """rows = []
for p in wordings:
    last = len(model.to_str_tokens(p.prompt)) - 1
    clean, _ = model.get_activations(p.prompt)
    ablated, _ = model.feature_intervention(
        p.prompt, [(f.layer, last, f.feature, 0.0) for f in central_features]
    )
    answer_id = model.tokenizer.convert_tokens_to_ids(p.answer)
    rows.append(
        {
            "prompt": p.prompt,
            "p(answer) clean": round(float(torch.softmax(clean[0, -1], -1)[answer_id]), 3),
            "p(answer) ablated": round(float(torch.softmax(ablated[0, -1], -1)[answer_id]), 3),
            "top after ablation": get_topk(ablated, model.tokenizer, 1)[0][0].strip(),
        }
    )
pd.DataFrame(rows)""",
    ),
    (
        "md",
        """## Where next

* `intervention_demo.ipynb`: direct effects against the graph's edges, and swapping in
  another person's country features (the answer becomes that country's capital).
* `attribute_demo.ipynb`: saving the graph and opening it in the viewer, where features can
  be grouped into supernodes by hand and labelled.
* `python -m ct_engine.toyworld.ground_truth`: these checks over every held-out prompt.""",
    ),
]
