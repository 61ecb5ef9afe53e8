"""The Celery app of the team profile's workers: ``celery -A ct_assets.lib.celery_worker worker``.

It is dagster-celery's step task on an app built from the executor's own settings
(:func:`ct_assets.lib.executors.worker_app_args`), so that workers and the executor agree on
broker, result backend, queues and acknowledgement. Each worker process imports the project
once and keeps the engine resource of ``ct_assets/defs/resources.py``, whose model cache holds
every model the process loaded: a model loads once per worker process, not once per step.
Start a worker per GPU with ``-Q gpu -c 1`` and CPU workers with ``-Q cpu``.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from ct_assets.lib.executors import worker_app_args

app = make_app(worker_app_args())
execute_plan = create_task(app)
