"""The feature census: which features recur across a model's graphs."""

import dagster as dg

from ct_assets.defs.partitions import models_partitions, per_model
from ct_assets.lib.resources import LakehouseResource
from ct_assets.lib.steps import PartitionOutcome, finish, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_lake.lake import Lake

CENSUS_SQL = """
SELECT n.layer, n.feature,
       count(DISTINCT n.prompt)::INTEGER AS n_graphs,
       count(*)::INTEGER AS n_nodes,
       avg(n.influence) AS mean_influence,
       max(n.influence) AS max_influence,
       list_sort(list_distinct(list(g.tokens[n.pos + 1]))) AS tokens
FROM read_parquet(?, hive_partitioning = true) n
JOIN read_parquet(?, hive_partitioning = true) g USING (model, prompt)
WHERE n.kind = 'feature' AND n.model = ?
GROUP BY n.layer, n.feature
ORDER BY n_graphs DESC, max_influence DESC
"""


@dg.asset(
    partitions_def=models_partitions,
    group_name="census",
    kinds={"duckdb", "parquet"},
    deps=[dg.AssetDep("attribution_graph", partition_mapping=per_model)],
    check_specs=[tracking_check_spec("feature_census")],
)
def feature_census(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> dg.MaterializeResult:
    """Per model, across all its graphs: each feature's number of graphs, mean and max
    influence, and the tokens it sits on (table ``feature_census``)."""
    import duckdb

    lake = Lake(lakehouse.config.lake)
    outcomes = []
    for model_key in context.partition_keys:
        con = duckdb.connect()
        result = con.execute(
            CENSUS_SQL, [lake.table_glob("nodes"), lake.table_glob("graphs"), model_key]
        ).to_arrow_table()
        lake.write_table("feature_census", result, model=model_key)
        recurring = result.filter(result.column("n_graphs").to_numpy() > 1).num_rows
        top = result.slice(0, 10).to_pylist()
        outcomes.append(
            PartitionOutcome(
                key=model_key,
                metadata={
                    "features": result.num_rows,
                    "recurring_features": recurring,
                    "top": dg.MetadataValue.md(
                        "| layer | feature | graphs | max influence | tokens |\n"
                        "|---|---|---|---|---|\n"
                        + "\n".join(
                            f"| {r['layer']} | {r['feature']} | {r['n_graphs']} | "
                            f"{r['max_influence']:.4f} | {', '.join(r['tokens'][:5])} |"
                            for r in top
                        )
                    ),
                },
                metrics={"features": result.num_rows, "recurring_features": recurring},
            )
        )
    return finish(context, tracker, outcomes)
