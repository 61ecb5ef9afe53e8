"""Cells of ``demos/model_families.ipynb``: one piece of code on every supported model family."""

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# One code path, every model family

circuit-tracer supports Gemma-2, Llama-3.2, Qwen-3, Gemma-3 and GPT-OSS, each with its own
transcoders (GemmaScope `.npz` files, circuit-tracer's per-layer and cross-layer formats,
GemmaScope-2 safetensors), hook points and quirks (Gemma-2's logit softcap, Gemma-3's
zeroed chat prefix, GPT-OSS's mixture of experts). The code that traces a prompt does not
change: this notebook runs one function on each family.

The real weights take gigabytes and a GPU, so here each family is a **tiny replica**: a
2-layer model of the same Hugging Face architecture with random weights, and random
transcoders written in the hub repo's exact file format, config keys and hook names
(`ct_engine.replicas`), served as a local hub. The numbers mean nothing (random weights);
that the same calls load, attribute and pass the check is the point.""",
    ),
    (
        "code",
        """from ct_engine.presets import preset

FAMILIES = {  # one preset per family; `ct_engine.presets.PRESETS` lists them all
    "Gemma-2": "gemma-2-2b",
    "Llama-3.2": "llama-3.2-1b",
    "Qwen-3": "qwen3-0.6b",
    "Gemma-3": "gemma-3-1b-pt",
    "GPT-OSS": "gpt-oss-20b-clt",
}
for family, name in FAMILIES.items():
    p = preset(name)
    kind = "CLT" if p.is_cross_layer else "PLTs"
    print(f"{family:9} {name:16} {p.model_id:24} + {p.transcoders} ({kind}, {p.backend})")""",
    ),
    (
        "md",
        """## The code

`trace` attributes a prompt, prunes the graph, scores it, and checks the graph against the
model: ablating the most influential feature with every layer frozen
(`constrained_layers=range(n_layers)`) must change the answer's mean-centred logit by
exactly the feature's edge into it (with any logit softcap switched off, as the graph is
computed without it).""",
    ),
    (
        "code",
        """import time

import torch

from ct_engine import attribute, compute_graph_scores, prune_graph
from ct_engine.utils.demo_utils import get_top_features


def trace(model, prompt, max_feature_nodes=256):
    start = time.perf_counter()
    graph = attribute(prompt, model, batch_size=64, max_feature_nodes=max_feature_nodes)
    node_mask, edge_mask, _ = prune_graph(graph)
    replacement, completeness = compute_graph_scores(graph)

    # the most influential feature's direct effect on the answer, in the model and in the graph
    features, _ = get_top_features(graph, n=1)
    layer, pos, feature = features[0]
    node = graph.active_features[graph.selected_features].tolist().index([layer, pos, feature])
    edge = float(graph.dense_adjacency()[graph.logit_node(0), node])
    answer = graph.logit_targets[0].vocab_idx
    with model.zero_softcap():
        clean, _ = model.get_activations(graph.input_tokens)
        ablated, _ = model.feature_intervention(
            graph.input_tokens,
            [(layer, pos, feature, 0.0)],
            constrained_layers=range(model.n_layers),
        )
    centred = [float(x[0, -1, answer] - x[0, -1].mean()) for x in (clean, ablated)]
    return dict(
        features=graph.n_features,
        kept=int(node_mask[: graph.n_features].sum()),
        replacement=replacement,
        completeness=completeness,
        oracle=abs((centred[1] - centred[0]) + edge) <= 1e-3 * max(1.0, abs(edge)),
        seconds=time.perf_counter() - start,
    )""",
    ),
    (
        "md",
        """## Run it on each family

`load_preset(name)` loads the preset's model and transcoders from the hub; `model_dir=`
points it at a local model folder instead (here the replica's), and `local_hub` serves the
replicas' transcoder repos in place of the hub. Converted transcoders are cached in
`$CT_CACHE_DIR`, here inside `model_families_files/`, so the replicas stay out of the real
cache.""",
    ),
    (
        "code",
        """import os
from pathlib import Path

from ct_engine.presets import load_preset
from ct_engine.replicas import build_replica, local_hub

scratch = Path("model_families_files")  # the replicas and their converted transcoders
os.environ["CT_CACHE_DIR"] = str(scratch / "cache")
torch.manual_seed(0)
PROMPT = "the capital of Texas is Austin and the"

results = {}
for family, name in FAMILIES.items():
    replica = build_replica(name, scratch / "replicas")
    with local_hub(replica.hub_root):
        model = load_preset(name, model_dir=replica.model_dir, device="cpu")
    results[family] = r = trace(model, PROMPT)
    print(
        f"{family}: {model.cfg.original_architecture} on {model.backend}, "
        f"{r['features']} feature nodes attributed, "
        f"oracle {'ok' if r['oracle'] else 'FAILED'}"
    )""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 3))
x = range(len(results))
for shift, score in ((-0.2, "replacement"), (0.2, "completeness")):
    ax.bar([i + shift for i in x], [r[score] for r in results.values()], 0.4, label=score)
ax.set_xticks(list(x), list(results))
ax.set_ylim(0, 1.2)
ax.set_title("graph scores on the tiny random replicas (not the real models')")
ax.legend(loc="upper center", ncol=2)
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        """## With the real weights

Drop the replica and name the model: the same `trace` runs unchanged. On a GPU, in the
dtype the preset advises (bfloat16; float32 on a CPU):

```python
# google/gemma-2-2b with GemmaScope transcoders
model = load_preset("gemma-2-2b", device="cuda", dtype=torch.bfloat16)
model = load_preset("llama-3.2-1b-clt-524k", device="cuda", dtype=torch.bfloat16)
trace(model, "Fact: the capital of the state containing Dallas is")
```

or, with circuit-tracer's arguments, a hub model id and a transcoder reference (a shortcut,
`owner/repo[/subfolder]` or a local folder):

```python
from ct_engine import ReplacementModel

model = ReplacementModel.from_pretrained("google/gemma-2-2b", "gemma", dtype=torch.bfloat16)
model = ReplacementModel.from_pretrained(
    "google/gemma-3-1b-it",
    "mwhanna/gemma-scope-2-1b-it/transcoder_all/width_16k_l0_small_affine",
    backend="nnsight",
)
```

Instruction-tuned Gemma-3 models zero their first four positions and expect the chat
template's prefix (`model.tokenizer.apply_chat_template(...)`); gated repos (Gemma, Llama)
need a Hugging Face token. Every preset, with its transcoders and backend:""",
    ),
    (
        "code",
        """from ct_engine.presets import PRESETS

for family in ("gemma2", "llama", "qwen3", "gemma3", "gpt_oss"):
    names = [name for name, p in PRESETS.items() if p.family == family]
    print(f"{family}: {', '.join(names)}")""",
    ),
]
