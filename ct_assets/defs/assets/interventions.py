"""Intervention results: does ablating a graph's top features do what its edges predict?"""

import dagster as dg
import torch

from ct_assets.defs.partitions import model_prompt_partitions
from ct_assets.lib.context import load_model, partition_inputs
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.steps import PartitionOutcome, finish, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_engine.graph import Graph
from ct_lake.graph_cache import load_graph
from ct_lake.paths import graph_path

DIRECT_CHECK = "direct_effects_match_adjacency"
# |observed direct − predicted| allowed, absolute + relative (float32 forward passes).
ATOL, RTOL = 1e-3, 1e-2


def _demeaned(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    last = logits[0, -1].double()
    return last[ids] - last.mean()


@dg.asset(
    partitions_def=model_prompt_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="interventions",
    pool="gpu",
    kinds={"pytorch", "parquet"},
    deps=["pruned_graph"],
    check_specs=[
        dg.AssetCheckSpec(
            DIRECT_CHECK,
            asset="intervention_results",
            description="with every layer frozen, ablating a feature moves each target's "
            "demeaned logit by minus its adjacency entry",
        ),
        tracking_check_spec("intervention_results"),
    ],
)
def intervention_results(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    engine: EngineResource,
    tracker: MlflowTracker,
) -> dg.MaterializeResult:
    """Ablate each of the pruned graph's top features (by influence) and record, for the top
    targets, the effect the graph predicts (``−A[target, feature]``), the direct effect
    observed with every layer frozen (must equal the prediction), and the total effect observed
    in the real model (effects propagate), with the target's probability before and after."""
    outcomes = []
    for key in context.partition_keys:
        p = partition_inputs(lakehouse, key)
        keys = dict(model=p.model_key, prompt=p.prompt_key)
        settings = p.config.interventions
        graph = load_graph(graph_path(p.lake, p.model_key, p.prompt_key))
        model = load_model(engine, p.lake, p.entry)
        nodes = p.lake.read_table("nodes", **keys).to_pydict()
        kept = p.lake.read_table("pruned_nodes", **keys).column("kept").to_pylist()
        features = [i for i in range(graph.n_features) if kept[i]]
        features.sort(key=lambda i: nodes["influence"][i], reverse=True)
        features = features[: settings.top_features]
        real = [k for k, t in enumerate(graph.logit_targets) if t.vocab_idx < model.d_vocab]
        real.sort(key=lambda k: float(graph.logit_probabilities[k]), reverse=True)
        targets = real[: settings.top_targets]
        ids = torch.tensor([graph.logit_targets[k].vocab_idx for k in targets])
        adjacency_rows = {k: _row(graph, graph.logit_node(k)) for k in targets}
        tokens = graph.input_tokens.to(model.device)
        L = model.n_layers
        with model.zero_softcap():
            base_direct = _demeaned(model.get_activations(tokens)[0], ids)
        base_logits, _ = model.get_activations(tokens)
        base_total = _demeaned(base_logits, ids)
        base_probs = torch.softmax(base_logits[0, -1].double(), -1)[ids]
        rows, worst = [], 0.0
        for node in features:
            layer, pos, feat = (int(nodes[c][node]) for c in ("layer", "pos", "feature"))
            ablate = [(layer, pos, feat, 0.0)]
            with model.zero_softcap():
                direct, _ = model.feature_intervention(
                    tokens, ablate, constrained_layers=range(L), return_activations=False
                )
            total, _ = model.feature_intervention(
                tokens, ablate, freeze_attention=False, return_activations=False
            )
            direct_delta = _demeaned(direct, ids) - base_direct
            total_delta = _demeaned(total, ids) - base_total
            probs = torch.softmax(total[0, -1].double(), -1)[ids]
            for j, k in enumerate(targets):
                predicted = -float(adjacency_rows[k][node])
                observed = float(direct_delta[j])
                worst = max(worst, abs(observed - predicted) - RTOL * abs(predicted))
                rows.append(
                    {
                        "node": node,
                        "layer": layer,
                        "pos": pos,
                        "feature": feat,
                        "activation": float(nodes["activation"][node]),
                        "target_rank": j,
                        "target_token": graph.logit_targets[k].token_str,
                        "target_vocab_idx": graph.logit_targets[k].vocab_idx,
                        "predicted_effect": predicted,
                        "observed_direct_effect": observed,
                        "observed_total_effect": float(total_delta[j]),
                        "prob_before": float(base_probs[j]),
                        "prob_after": float(probs[j]),
                    }
                )
        p.lake.write_table("interventions", rows, **keys)
        passed = worst <= ATOL
        outcomes.append(
            PartitionOutcome(
                key=p.key,
                metadata={
                    "features_ablated": len(features),
                    "targets": len(targets),
                    "max_direct_error": worst + 0.0,
                    "effects": dg.MetadataValue.md(_table(rows)),
                },
                metrics={"max_direct_error": worst, "n_rows": len(rows)},
                params={"top_features": settings.top_features, "top_targets": settings.top_targets},
                checks={
                    DIRECT_CHECK: (passed, {"max_excess_error": worst, "atol": ATOL, "rtol": RTOL})
                },
            )
        )
    return finish(context, tracker, outcomes, check_names=(DIRECT_CHECK,))


def _row(graph: Graph, node: int) -> torch.Tensor:
    A = graph.adjacency_matrix
    if A.layout == torch.strided:
        return A[node].double().cpu()
    return A.to_sparse_coo()[node].to_dense().double().cpu()


def _table(rows: list[dict]) -> str:
    lines = [
        "| feature (l, pos, f) | target | predicted | direct | total | p before → after |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| ({r['layer']}, {r['pos']}, {r['feature']}) | {r['target_token']!r} | "
            f"{r['predicted_effect']:+.4f} | {r['observed_direct_effect']:+.4f} | "
            f"{r['observed_total_effect']:+.4f} | {r['prob_before']:.3f} → {r['prob_after']:.3f} |"
        )
    return "\n".join(lines)
