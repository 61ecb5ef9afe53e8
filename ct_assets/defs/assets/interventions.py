"""Intervention results: does ablating a graph's top features do what its edges predict?"""

from collections.abc import Iterator

import dagster as dg
import torch

from ct_assets.defs.partitions import model_prompt_partitions
from ct_assets.lib.context import graph_partitions, read_graph
from ct_assets.lib.profiles import GPU_QUEUE, step_tags
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.steps import Result, report, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_engine.graph import Graph
from ct_lake import records

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
    op_tags=step_tags(GPU_QUEUE),
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
) -> Iterator[dg.MaterializeResult]:
    """Ablate each of the pruned graph's top features (by influence) and record, for the top
    targets, the effect the graph predicts (``−A[target, feature]``), the direct effect
    observed with every layer frozen (must equal the prediction), and the total effect observed
    in the real model (effects propagate), with the target's probability before and after."""
    results = []
    for p in graph_partitions(context, lakehouse):
        graph = read_graph(p.lake, p.keys)
        nodes = p.lake.read_table("nodes", **p.keys).to_pydict()
        kept = p.lake.read_table("pruned_nodes", **p.keys).column("kept").to_pylist()
        model = engine.model(p.entry, p.lake)
        rows, worst = ablate_top_features(model, graph, nodes, kept, p.config.interventions)
        record = records.interventions_record(p.keys, rows, p.config.interventions, worst)
        records.store(p.lake, record)
        check = (worst <= ATOL, {"max_excess_error": worst, "atol": ATOL, "rtol": RTOL})
        results.append(Result(p.key, record, checks={DIRECT_CHECK: check}, text=p.text))
    yield from report(context, lakehouse, tracker, results, check_names=(DIRECT_CHECK,))


def ablate_top_features(
    model, graph: Graph, nodes: dict[str, list], kept: list[bool], settings
) -> tuple[list[dict], float]:
    """``(interventions rows, worst excess error)``: ablate the ``settings.top_features`` kept
    features of most influence, one at a time, and measure the ``settings.top_targets`` most
    probable real targets. The excess error is ``|direct − predicted| − RTOL·|predicted|``.

    ``nodes``: the ``nodes`` table as columns; ``kept``: ``pruned_nodes.kept``."""
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
    return rows, worst


def _row(graph: Graph, node: int) -> torch.Tensor:
    A = graph.adjacency_matrix
    if A.layout == torch.strided:
        return A[node].double().cpu()
    return A.to_sparse_coo()[node].to_dense().double().cpu()
