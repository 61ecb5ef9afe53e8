"""Cells of ``demos/intervention_demo.ipynb``: ablate, check, swap and steer features."""

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Intervention demo

An attribution graph is a hypothesis about how the model computes its answer; interventions
test it on the model itself. `feature_intervention` sets transcoder features to **absolute**
activations (as circuit-tracer does: 0 ablates, `2 * a` doubles) and runs the model with the
change; `feature_intervention_generate` keeps the change while generating.

On the toy world (`ct_engine/toyworld/MODEL_CARD.md`), *"The capital of the country where
Mosho lives is"* needs two hops: Mosho lives in Soubathia (never named in the prompt), whose
capital is Ludus. We find the features that carry the country in the graph, then ablate
them, check their direct effects against the graph's edges, and swap in another person's
country.""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt
import torch

from ct_engine import ReplacementModel, attribute
from ct_engine.toyworld.default_model import load_world
from ct_engine.utils.demo_utils import get_top_features, get_topk

model = ReplacementModel.from_pretrained("toy-world", "toy-world-clt", device="cpu")
world = load_world()  # the invented world: its people, countries and the prompts about them

prompt = "The capital of the country where Mosho lives is"
tokens = model.to_str_tokens(prompt)
last = len(tokens) - 1
clean_logits, clean_acts = model.get_activations(prompt)  # (1, T, vocab), (layers, T, features)


def show(label, logits, k=3):
    print(f"{label}:", [(t.strip(), round(p, 3)) for t, p in get_topk(logits, model.tokenizer, k)])


show("clean", clean_logits)""",
    ),
    (
        "md",
        """## The features that carry the answer

In the graph, the features at the last position with the largest influence on the answer
(direct and through other features) form a **supernode**: in circuit-tracer's demos one
groups them by hand in the viewer; here we take every feature at the last position whose
influence is at least 1 % of the logits' attribution.""",
    ),
    (
        "code",
        """# The influential features at the last position of a prompt's graph, with their
# activations: [(layer, feature, activation), ...], and the graph.
def supernode(text):
    g = attribute(text, model, batch_size=64)
    features, scores = get_top_features(g, n=g.n_features)
    _, acts = model.get_activations(text)
    position = g.n_pos - 1
    return [
        (layer, feature, float(acts[layer, pos, feature]))
        for (layer, pos, feature), score in zip(features, scores, strict=True)
        if pos == position and score >= 0.01
    ], g


mosho, graph = supernode(prompt)
for layer, feature, activation in mosho:
    print(f"layer {layer} feature {feature}: activation {activation:.2f}")""",
    ),
    (
        "md",
        """## Direct effects equal the graph's edges

With `constrained_layers=range(n_layers)` attention patterns, norms and every MLP output are
frozen: the model becomes the graph's linear replacement model, so ablating a feature
changes the answer's (mean-centred) logit by minus the feature's edge into the logit node.""",
    ),
    (
        "code",
        """A = graph.dense_adjacency()
answer = graph.logit_targets[0]
selected = graph.active_features[graph.selected_features].tolist()


def centred_logit(logits):
    return float(logits[0, -1, answer.vocab_idx] - logits[0, -1].mean())


rows = []
for layer, feature, _ in mosho:
    node = selected.index([layer, last, feature])
    predicted = -float(A[graph.logit_node(0), node])
    direct, _ = model.feature_intervention(
        prompt, [(layer, last, feature, 0.0)], constrained_layers=range(model.n_layers)
    )
    observed = centred_logit(direct) - centred_logit(clean_logits)
    rows.append((layer, feature, predicted, observed))
    print(
        f"ablate L{layer} #{feature}: graph predicts {predicted:+.4f}, model gives {observed:+.4f}"
    )
print(
    "direct effects match the graph:",
    all(abs(p - o) <= 1e-3 * max(1.0, abs(p)) for _, _, p, o in rows),
)""",
    ),
    (
        "md",
        """## Ablate the supernode

Now without constraints (attention patterns frozen, circuit-tracer's default; effects
propagate through later layers).""",
    ),
    (
        "code",
        """ablate = [(layer, last, feature, 0.0) for layer, feature, _ in mosho]
ablated_logits, _ = model.feature_intervention(prompt, ablate)
show("clean  ", clean_logits)
show("ablated", ablated_logits)
print("ablated, answer:", get_topk(ablated_logits, model.tokenizer, 1)[0][0].strip())""",
    ),
    (
        "md",
        """## Swap in another country

Take the same question about a person from another country (the *donor*), find its
supernode the same way, and write it into Mosho's prompt at twice the donor's activations
while ablating Mosho's. If the supernode stands for the country, the answer becomes the
donor's capital. The donors: the first person of each other country, in the world's order.""",
    ),
    (
        "code",
        """mosho_country = next(p.country for p in world.people if p.name == "Mosho")
donors = {}
for person in world.people:
    if person.country != mosho_country and person.country not in donors:
        donors[person.country] = person
donors = list(donors.values())[:4]


def swap_items(donor_features, scale=2.0):
    return ablate + [(layer, last, f, scale * act) for layer, f, act in donor_features]


def capital(country):
    return next(c.capital for c in world.countries if c.name == country)


results = []
for person in donors:
    text = prompt.replace("Mosho", person.name)
    donor_features, _ = supernode(text)
    logits, _ = model.feature_intervention(prompt, swap_items(donor_features))
    top = get_topk(logits, model.tokenizer, 1)[0][0].strip()
    results.append((person, donor_features, logits, top))
    print(
        f"{person.name} ({person.country}, capital {capital(person.country)}): "
        f"{len(donor_features)} features -> answer {top}"
    )
works = sum(top == capital(p.country) for p, _, _, top in results)
print(f"the swap gives the donor's capital for {works} of {len(results)} donors")""",
    ),
    (
        "code",
        """person, donor_features, swapped_logits, top = results[0]
donor_capital = capital(person.country)
print(f"swapped answer: {top} (donor's capital: {donor_capital})")

vocab = model.tokenizer.convert_tokens_to_ids([answer.token_str, donor_capital])
conditions = {"clean": clean_logits, "ablated": ablated_logits, "swapped": swapped_logits}
probs = {
    name: torch.softmax(logits[0, -1].double(), -1)[vocab].tolist()
    for name, logits in conditions.items()
}
fig, ax = plt.subplots(figsize=(6, 3))
width = 0.35
for i, token in enumerate([answer.token_str, donor_capital]):
    ax.bar(
        [x + i * width for x in range(3)],
        [probs[c][i] for c in conditions],
        width,
        label=f"p({token})",
    )
ax.set_xticks([x + width / 2 for x in range(3)], list(conditions))
ax.set_ylabel("probability of the next token")
ax.set_title(f"Mosho's country features, then {person.name}'s")
ax.legend()
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        """## Steer generation

`feature_intervention_generate` applies the interventions while it generates (positions
may also be open-ended slices such as `slice(last, None)`, which reach the new tokens).""",
    ),
    (
        "code",
        """clean_text, _, _ = model.feature_intervention_generate(prompt, [], max_new_tokens=4)
steered_text, _, _ = model.feature_intervention_generate(
    prompt, swap_items(donor_features), max_new_tokens=4
)
print("clean:  ", clean_text)
print("steered:", steered_text)""",
    ),
]
