"""Attribution in bf16 and fp16 against fp32 on tiny models (PLT and CLT, Llama and Gemma-2).

Rows are computed in the model dtype and stored as float32, so low precision
changes which features cross their thresholds and perturbs every edge. What is checked:

* active features: Jaccard overlap of the (layer, position, feature) sets;
* edges: on the nodes both graphs share (common features, errors, tokens, common targets),
  ``max |A_low - A_fp32| / max |A_fp32|``;
* the top logit target is unchanged.

Measured values are in ``benchmarks/results/precision.md`` (regenerate with
``python -m tests.engine.attribution.test_precision``); the bounds below leave about a 2-3x
margin over them.
"""

from __future__ import annotations

import pytest
import torch

from ct_engine.attribution import attribute
from ct_engine.replacement import ReplacementModel
from tests.engine.conftest import PROMPT

CASES = [
    ("llama", "plt_jumprelu"),
    ("llama", "clt"),
    ("gemma2", "plt_jumprelu"),
    ("gemma2", "clt"),
]
# dtype -> (min Jaccard overlap of active features, max relative adjacency error)
TOLERANCES = {torch.bfloat16: (0.97, 0.08), torch.float16: (0.99, 0.04)}


def compare(reference, graph) -> dict:
    """Overlap and relative edge error of ``graph`` against ``reference`` (same prompt)."""
    ref_keys = {tuple(r): i for i, r in enumerate(reference.active_features.tolist())}
    low_keys = {tuple(r): i for i, r in enumerate(graph.active_features.tolist())}
    common = sorted(set(ref_keys) & set(low_keys))
    jaccard = len(common) / max(len(set(ref_keys) | set(low_keys)), 1)

    def node_index(g, keys, targets):
        n_feat = len(g.selected_features)
        n_other = g.adjacency_matrix.shape[0] - n_feat - len(g.logit_targets)
        feats = [keys[k] for k in common]  # uncapped graphs: feature i is node i
        others = list(range(n_feat, n_feat + n_other))
        by_vocab = {t.vocab_idx: i for i, t in enumerate(g.logit_targets)}
        logits = [n_feat + n_other + by_vocab[v] for v in targets]
        return torch.tensor(feats + others + logits)

    targets = sorted(
        {t.vocab_idx for t in reference.logit_targets} & {t.vocab_idx for t in graph.logit_targets}
    )
    ia = node_index(reference, ref_keys, targets)
    ib = node_index(graph, low_keys, targets)
    a = reference.adjacency_matrix[ia][:, ia]
    b = graph.adjacency_matrix[ib][:, ib]
    return {
        "n_active_fp32": len(ref_keys),
        "n_active": len(low_keys),
        "jaccard": jaccard,
        "rel_max_err": float((a - b).abs().max() / a.abs().max()),
        "rel_mean_err": float((a - b).abs().mean() / a.abs().mean()),
        "top_target_same": reference.logit_targets[0].vocab_idx == graph.logit_targets[0].vocab_idx,
        "finite": bool(torch.isfinite(graph.adjacency_matrix).all()),
    }


def run_case(model_dir, tc_dir, dtype) -> dict:
    graphs = {}
    for dt in (torch.float32, dtype):
        model = ReplacementModel.from_pretrained(model_dir, tc_dir, device="cpu", dtype=dt)
        graphs[dt] = attribute(PROMPT, model, batch_size=64)
    return compare(graphs[torch.float32], graphs[dtype])


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=["bf16", "fp16"])
@pytest.mark.parametrize("family,kind", CASES)
def test_low_precision_close_to_fp32(tiny_model_dir, transcoder_dir, family, kind, dtype):
    result = run_case(tiny_model_dir(family), transcoder_dir(family, kind), dtype)
    min_jaccard, max_err = TOLERANCES[dtype]
    assert result["finite"]
    assert result["top_target_same"], result
    assert result["jaccard"] >= min_jaccard, result
    assert result["rel_max_err"] <= max_err, result


if __name__ == "__main__":  # print the table of benchmarks/results/precision.md
    import tempfile
    import zlib
    from pathlib import Path

    from ct_engine.tiny import FAMILY_HOOKS, build_random_transcoders, build_tiny_model
    from tests.engine.conftest import TINY, TRANSCODER_KINDS

    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp())
    print(
        "| family | transcoders | dtype | N_act fp32 | N_act | Jaccard | max rel err |"
        " mean rel err | top target same |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for family, kind in CASES:
        spec = TINY[family]
        mdir = (
            build_tiny_model(root / family, spec) if not (root / family).exists() else root / family
        )
        tdir = root / f"{family}-{kind}"
        if not tdir.exists():
            build_random_transcoders(
                tdir, n_layers=spec.n_layers, d_model=spec.d_model,
                d_transcoder=4 * spec.d_model, feature_input_hook=FAMILY_HOOKS[family][0],
                feature_output_hook=FAMILY_HOOKS[family][1],
                seed=zlib.crc32(f"{family}-{kind}".encode()) % 1000, **TRANSCODER_KINDS[kind],
            )  # fmt: skip
        for dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
            r = run_case(mdir, tdir, dtype)
            print(f"| {family} | {kind} | {name} | {r['n_active_fp32']} | {r['n_active']} | "
                  f"{r['jaccard']:.3f} | {r['rel_max_err']:.2e} | {r['rel_mean_err']:.2e} | "
                  f"{r['top_target_same']} |")  # fmt: skip
