"""The retrieval index as a step of the flow: built once from the train split before any
strategy trains (when a chosen strategy retrieves), recorded on the parent run (rows, bytes,
build time, the data version and encoder it is bound to, and the index files as an artifact),
then found in the cache by every retrieval strategy's own run, whatever process it runs in."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.training.context import RunContext
from tasks.tasktypes import task_type


def retrieval_embedders(ctx: RunContext) -> list[str]:
    """The encoders the chosen strategies that retrieve index with (empty: none retrieves)."""
    from tasks.strategies import registry

    return sorted({ctx.settings.strategy_params[name].embedder for name in ctx.settings.strategies
                   if registry.get(name, ctx.settings.task).retrieval_metrics is not None})


@task(name="retrieval index (FAISS)", cache_policy=NO_CACHE)
def build_retrieval_index(ctx: RunContext) -> None:
    from mlflow.tracking import MlflowClient

    from tasks.strategies.retrieval_index import load_index, train_index

    answer = task_type(ctx.settings.task).answer_column   # what a retrieved neighbour shows
    client, embedders = MlflowClient(), retrieval_embedders(ctx)
    for embedder in embedders:
        folder, version = train_index(ctx.frames["train"], answer, embedder)
        index = load_index(folder, embedder, version)
        name = "retrieval_index" if len(embedders) == 1 else f"retrieval_index.{embedder}"
        for key, value in {"rows": index.identity.rows, "bytes": index.size_bytes(),
                           "build_seconds": index.build_seconds}.items():
            client.log_metric(ctx.parent_run_id, f"{name}_{key}", float(value))
        client.set_tag(ctx.parent_run_id, f"{name}.data_version", version)   # sha256 of the train rows
        client.set_tag(ctx.parent_run_id, f"{name}.train_md5", ctx.data.split_hashes["train"])   # DVC's
        client.set_tag(ctx.parent_run_id, f"{name}.embedder_fingerprint", index.identity.embedder_fingerprint)
        client.log_artifacts(ctx.parent_run_id, str(folder), name)
        get_run_logger().info("retrieval index: %d train rows, %.1f MB, built in %.1f s (%s, data version %s)",
                              index.identity.rows, index.size_bytes() / 1e6, index.build_seconds,
                              embedder, version[:12])
