"""Ways to add prompts from Dagster: a sensor on the config's prompt sets and prompts file,
and a ``register_prompt`` job to launch from the UI's launchpad."""

import hashlib

import dagster as dg

from ct_assets.defs.jobs import graph_job
from ct_assets.lib.context import multi_key
from ct_assets.lib.resources import LakehouseResource
from ct_lake.prompts import register_prompts


class PromptConfig(dg.Config):
    """Launchpad config of ``register_prompt``: the text and the models to trace it on."""

    text: str
    models: list[str]


@dg.op
def register_prompt_op(
    context: dg.OpExecutionContext, config: PromptConfig, lakehouse: LakehouseResource
):
    registered = register_prompts(lakehouse.config, [config.text], config.models, context.instance)
    keys = [multi_key(model, prompt) for model, prompt in registered.partitions]
    context.log.info(f"registered {', '.join(keys)}")
    return keys


@dg.job(description="Register a prompt (launchpad config: text, models) as new partitions.")
def register_prompt():
    register_prompt_op()


def _prompt_file_lines(config) -> list[str]:
    if config.prompts_file is None or not config.prompts_file.exists():
        return []
    return [line for line in config.prompts_file.read_text().splitlines() if line.strip()]


@dg.sensor(
    job=graph_job,
    minimum_interval_seconds=30,
    description="Registers the config's prompt sets and the lines of its prompts file as "
    "partitions, and requests runs for new ones.",
)
def prompt_file_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
    config = lakehouse.config
    texts = [t for prompts in config.prompt_sets.values() for t in prompts]
    texts += _prompt_file_lines(config)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    if context.cursor == digest:
        return dg.SkipReason("no new prompts")
    models = [m.name for m in config.models]
    registered = register_prompts(config, texts, models, context.instance)
    keys = [multi_key(model, prompt) for prompt in registered.new_prompts for model in models]
    requests = [dg.RunRequest(run_key=key, partition_key=key) for key in keys]
    context.update_cursor(digest)
    return dg.SensorResult(run_requests=requests)
