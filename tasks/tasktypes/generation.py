"""Generation: text written by a causal LM through its chat template, trained with the loss on
the target tokens only and judged on greedy outputs (ROUGE, chrF, exact match); served at
POST /generate."""
from tasks.tasktypes.registry import TaskType, register

register(TaskType(
    name="generation",
    summary="a text written for each input (ROUGE-L, chrF, exact match on greedy outputs)",
    answer_column="target", answer_setting="target_col", has_labels=False, generates=True, base_kind="causal_lm",
    strategies_section=("generation", "strategies"),
    quality="rougeL", selectable=("rougeL", "chrf"), paired_test="paired_p",
    seed_keys=("val_rougeL", "val_chrf", "test_rougeL", "test_chrf"),
    table=("test_rougeL", "test_chrf", "test_exact_match", "trainable_fraction", "artifact_bytes", "train_seconds",
           "latency_ms_p50"),
    route="/generate",
    request_schema={"type": "object", "required": ["model", "texts"],
                    "properties": {"model": {"type": "string"}, "texts": {"type": "array", "items": {"type": "string"}},
                                   "alias": {"type": "string"}, "version": {"type": "integer"},
                                   "max_new_tokens": {"type": "integer"}}},
    response_schema={"type": "object", "properties": {"outputs": {"type": "array", "items": {"type": "string"}}}},
    feedback="corrected_output",
    signature_example=({"text": ["an article"]}, {"output": ["a headline"]}),
))
