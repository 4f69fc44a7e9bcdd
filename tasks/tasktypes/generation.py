"""Generation: text written by a causal LM through its chat template, trained with the loss on
the target tokens only and judged on greedy outputs (ROUGE, chrF, exact match); served at
POST /generate."""
from tasks.tasktypes.registry import TaskType, feedback_schema, register, request_schema, response_schema

register(TaskType(
    name="generation",
    summary="a text written for each input (ROUGE-L, chrF, exact match on greedy outputs)",
    answer_column="target", answer_setting="target_col", has_labels=False, generates=True, base_kind="causal_lm",
    default_base="smollm2-135m-instruct",   # the packaged SmolLM2-135M-Instruct (a causal LM)
    strategies_section="generation.strategies",
    quality="rougeL", selectable=("rougeL", "chrf"), paired_metric="paired_p",
    seed_keys=("val_rougeL", "val_chrf", "test_rougeL", "test_chrf"),
    table=("test_rougeL", "test_chrf", "test_exact_match", "trainable_fraction", "artifact_bytes", "train_seconds",
           "latency_ms_p50"),
    report_columns=("val_rougeL", "test_rougeL", "paired_p", "test_rouge1", "test_rouge2", "test_chrf", "test_bleu",
                    "test_exact_match", "test_embedding_similarity", "prompt_variant_std", "trainable_fraction",
                    "artifact_bytes", "train_seconds", "latency_ms_p50", "latency_ms_p95", "generated_tokens_per_s",
                    "peak_rss_mb", "val_perplexity", "forgetting_delta", "empty_output_share", "repetition_share",
                    "length_cap_share", "policy_violation_rate", "retrieval_ms_p50", "retrieval_extra_prompt_tokens"),
    labels={"latency_ms_p50": "gen p50 ms", "latency_ms_p95": "gen p95 ms"},
    route="/generate",
    # POST /generate: the /predict body plus an optional decoding cap; a blocked output is null
    # (its rules under `policy`).
    request_schema=request_schema(max_new_tokens={"type": "integer", "minimum": 1}),
    response_schema=response_schema("outputs", {"type": ["string", "null"]}, policy={"type": "array"}),
    feedback="corrected_output",
    # POST /feedback: the output the model should have written, a rating of the one it wrote, or both.
    feedback_body=feedback_schema([], ["output", "rating"], output={"type": "string", "minLength": 1},
                                  rating={"type": "integer", "minimum": 1, "maximum": 5}),
    # Its quality (the feedback-quality retrain trigger): the ratings, 1..5 scaled to 0..1; a
    # corrected output alone says the answer was wrong but not how wrong, and is not counted.
    feedback_quality="rating",
    signature_example=({"text": ["an article"]}, {"output": ["a headline"]}),
))
