"""The feature census: which features recur across a model's graphs."""

from collections.abc import Iterator

import dagster as dg

from ct_assets.defs.partitions import models_partitions, per_model
from ct_assets.lib.profiles import CPU_QUEUE, step_tags
from ct_assets.lib.resources import LakehouseResource
from ct_assets.lib.steps import Result, report, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_lake import records

# Over the catalog's views of the lake (DuckDB prunes the other models' partitions).
CENSUS_SQL = """
SELECT n.layer, n.feature,
       count(DISTINCT n.prompt)::INTEGER AS n_graphs,
       count(*)::INTEGER AS n_nodes,
       avg(n.influence) AS mean_influence,
       max(n.influence) AS max_influence,
       list_sort(list_distinct(list(g.tokens[n.pos + 1]))) AS tokens
FROM nodes n
JOIN graphs g USING (model, prompt)
WHERE n.kind = 'feature' AND n.model = ?
GROUP BY n.layer, n.feature
ORDER BY n_graphs DESC, max_influence DESC, n.layer, n.feature
"""


@dg.asset(
    partitions_def=models_partitions,
    group_name="census",
    op_tags=step_tags(CPU_QUEUE),
    kinds={"duckdb", "parquet"},
    deps=[dg.AssetDep("attribution_graph", partition_mapping=per_model)],
    check_specs=[tracking_check_spec("feature_census")],
)
def feature_census(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> Iterator[dg.MaterializeResult]:
    """Per model, across all its graphs: each feature's number of graphs, mean and max
    influence, and the tokens it sits on (table ``feature_census``)."""
    from ct_lake.catalog import connect

    results = []
    for model in context.partition_keys:
        con = connect(lakehouse.lake)
        try:
            census = con.sql(CENSUS_SQL, params=[model]).to_arrow_table()
        finally:
            con.close()
        record = records.census_record({"model": model}, census)
        records.store(lakehouse.lake, record)
        results.append(Result(model, record))
    yield from report(context, lakehouse, tracker, results)
