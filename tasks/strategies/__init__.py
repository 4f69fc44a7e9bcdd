"""Every strategy adaptflow can run. Adding one = one module here + one line below.
May import: tasks.models only. Never MLflow, Prefect or another tasks package.
The lines are in registration order, which is the order `all` runs and reports them in."""
# ruff: noqa: I001
from tasks.strategies import full_finetune  # noqa: F401
from tasks.strategies import partial_finetune  # noqa: F401
from tasks.strategies import lora  # noqa: F401
from tasks.strategies import ia3  # noqa: F401
from tasks.strategies import prompt_tuning  # noqa: F401
from tasks.strategies import prefix_tuning  # noqa: F401
from tasks.strategies import bottleneck_adapter  # noqa: F401
from tasks.strategies import lora_prompt  # noqa: F401
from tasks.strategies import unipelt  # noqa: F401
from tasks.strategies import zero_shot  # noqa: F401
from tasks.strategies import few_shot  # noqa: F401
from tasks.strategies import retrieval_few_shot  # noqa: F401
from tasks.strategies import zero_shot_generation  # noqa: F401
from tasks.strategies import few_shot_generation  # noqa: F401
from tasks.strategies import retrieval_few_shot_generation  # noqa: F401
from tasks.strategies import with_retrieval  # noqa: F401  (the `+retrieval` variant of each trained strategy)
