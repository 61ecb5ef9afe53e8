"""Cells of ``demos/attribute_demo.ipynb``: attribute one prompt, save it, write viewer files."""

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Attribution demo

The shortest path from a prompt to an attribution graph, with the calls a circuit-tracer
user knows: `ReplacementModel.from_pretrained`, `attribute`, `Graph.to_pt` and
`create_graph_files`, then the graph in the viewer.

It runs offline on the shipped **toy world**: a 4-layer Llama trained on sentences about an
invented world, with its own transcoders: `toy-world-clt`, a cross-layer transcoder (each
feature writes to every later layer), or `toy-world-plt`, one per layer
(`ct_engine/toyworld/MODEL_CARD.md`). With real weights, only the names change:

```python
model = ReplacementModel.from_pretrained("google/gemma-2-2b", "gemma", dtype=torch.bfloat16)
```

(`model_families.ipynb` runs the same code on every supported model family.)""",
    ),
    (
        "code",
        """import torch

from ct_engine import ReplacementModel, attribute, compute_graph_scores, prune_graph
from ct_engine.utils import create_graph_files

model = ReplacementModel.from_pretrained("toy-world", "toy-world-clt", device="cpu")
print(f"{model.n_layers} layers, d_model {model.d_model}, backend {model.backend}")""",
    ),
    (
        "md",
        """## Attribute

The settings are circuit-tracer's: explain the most likely next tokens up to 95 % of
the probability (at most 10 of them), backward passes of `batch_size` targets, and at most
`max_feature_nodes` features ranked by influence. `offload` moves transcoder weights off the
accelerator during attribution (nothing to do on a CPU). The toy world's answer here is
*Ludus*: the capital of the country (never named) where Mosho lives.""",
    ),
    (
        "code",
        """prompt = "The capital of the country where Mosho lives is"
max_n_logits = 10  # how many logits to attribute from, at most
desired_logit_prob = 0.95  # ...or fewer, once their probabilities add up to this
max_feature_nodes = 8192  # features kept in the graph, the most influential first
batch_size = 64  # targets per backward pass
offload = None  # "cpu" or "disk" to save accelerator memory
verbose = False  # True: a progress bar and the time of each phase

graph = attribute(
    prompt,
    model,
    max_n_logits=max_n_logits,
    desired_logit_prob=desired_logit_prob,
    batch_size=batch_size,
    max_feature_nodes=max_feature_nodes,
    offload=offload,
    verbose=verbose,
)
tokens = model.to_str_tokens(prompt)
print("tokens:", tokens)
print(
    "targets:",
    [
        (t.token_str, round(float(p), 3))
        for t, p in zip(graph.logit_targets, graph.logit_probabilities, strict=True)
    ],
)
print(
    f"{graph.n_features} feature nodes of {len(graph.active_features)} active features, "
    f"{graph.n_nodes} nodes in all"
)""",
    ),
    (
        "md",
        """## What the graph says

`graph.adjacency_matrix[target, source]` is the direct effect of the source node on the
target node in the replacement model, nodes in the order *features, error nodes, token
embeddings, logits*. Pruning keeps the nodes that carry 80 % of the influence on the logits
and the edges that carry 98 %. The replacement score is the share of the logits' influence
that reaches the token embeddings through features rather than error nodes; the
completeness score is the share of each node's input that does not come from error nodes.""",
    ),
    (
        "code",
        """node_mask, edge_mask, cumulative_scores = prune_graph(
    graph, node_threshold=0.8, edge_threshold=0.98
)
replacement, completeness = compute_graph_scores(graph)
print(
    f"pruned: {int(node_mask[: graph.n_features].sum())} features and {len(edge_mask)} edges kept"
)
print(f"replacement score {replacement:.3f}, completeness score {completeness:.3f}")""",
    ),
    (
        "md",
        """The features with the largest influence on the targets, direct and through other
features (circuit-tracer's `get_top_features`), and the pruned graph: token embeddings at
the bottom, the logits on top, features (dots) and error nodes (squares) at their layer and
position, edges blue when they excite and red when they inhibit.""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt
from IPython.display import Image

from ct_assets.lib.plots import plot_pruned_graph  # the picture the lakehouse stores
from ct_engine.utils.demo_utils import get_top_features

features, scores = get_top_features(graph, n=8)
for (layer, pos, feature), score in zip(features, scores, strict=True):
    print(f"layer {layer} pos {pos} ({tokens[pos]!r}) feature {feature}: influence {score:.3f}")

fig, ax = plt.subplots(figsize=(7, 3))
ax.barh([f"L{l} #{f} @ {tokens[p]}" for l, p, f in features][::-1], scores[::-1])
ax.set_xlabel("influence on the targets")
ax.set_title("top features")
plt.tight_layout()
plt.show()""",
    ),
    (
        "code",
        """from pathlib import Path

out = Path("attribute_demo_files")  # graph, viewer files and pictures go here
out.mkdir(exist_ok=True)
pruned = prune_graph(graph)
weights = pruned.edge_mask.values_in(graph.adjacency_matrix)
picture = plot_pruned_graph(graph, pruned, out / "pruned.png", weights, title=prompt, tokens=tokens)
Image(filename=picture)""",
    ),
    (
        "md",
        """## Save the graph

`graph.to_pt` writes circuit-tracer's `.pt` file (`Graph.from_pt` in either library reads
it back); `graph.save` writes a pickle-free `.safetensors` file.""",
    ),
    (
        "code",
        """from ct_engine import Graph

graph_path = out / "mosho.pt"
graph.to_pt(graph_path)
graph.save(out / "mosho.safetensors")
for path in sorted(out.glob("mosho.*")):
    print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB")
again = Graph.from_pt(graph_path)
print("read back equal:", torch.equal(again.adjacency_matrix, graph.adjacency_matrix))""",
    ),
    (
        "md",
        """## Viewer files

`create_graph_files` prunes the graph and writes `<slug>.json` in circuit-tracer's (and
Neuronpedia's) graph format, and lists it in `graph-metadata.json`: the same files that
circuit-tracer's frontend reads.""",
    ),
    (
        "code",
        """import json

graph_file_dir = out / "graph_files"
create_graph_files(
    graph_or_path=graph_path,
    slug="mosho",
    output_path=graph_file_dir,
    node_threshold=0.8,
    edge_threshold=0.98,
)
document = json.loads((graph_file_dir / "mosho.json").read_text())
print(sorted(p.name for p in graph_file_dir.iterdir()))
print(len(document["nodes"]), "nodes,", len(document["links"]), "links")
print(
    "a feature node:",
    next(n for n in document["nodes"] if n["feature_type"] == "cross layer transcoder"),
)""",
    ),
    (
        "md",
        """## Look at it

`serve` starts the viewer over the folder of graph files in the background, as
circuit-tracer's `serve` does; open the address it prints (here the cell only checks that
the viewer lists the graph) and stop it when done. In a terminal, circuit-tracer's command
does the same: `ct start-server --graph_file_dir attribute_demo_files/graph_files`.""",
    ),
    (
        "code",
        """import urllib.request

from ct_viewer.local_server import serve

server = serve(data_dir=graph_file_dir, port=0)  # 0: any free port; circuit-tracer uses 8046
with urllib.request.urlopen(server.url + "api/graphs") as response:
    listed = json.load(response)["graphs"]
print("the viewer lists:", [(g["id"], g["prompt_text"]) for g in listed])""",
    ),
    (
        "code",
        """server.stop()
print("viewer stopped")""",
    ),
]
