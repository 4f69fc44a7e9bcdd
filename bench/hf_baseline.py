"""The baseline adaptflow's training is measured against: each strategy written the way a user
would write it by hand with Hugging Face `Trainer` (or `adapters.AdapterTrainer`) and PEFT /
`adapters`, with adaptflow's hyperparameters (batch size, learning rate, AdamW with weight decay
0.01, linear schedule with 6 % warmup, seed). Nothing here imports adaptflow's strategy code:
only the base model folder, the label names and the strategy's params are shared.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path


def build(name: str, base_path: Path, labels: list[str], p: dict):
    """The model a user would build for strategy `name` with params `p` (as in params.yaml)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)})
    if name == "full_finetune":
        return model
    if name == "partial_finetune":
        for module in [model.bert.embeddings, *model.bert.encoder.layer[: p.get("frozen_layers", 4)]]:
            module.requires_grad_(False)
        return model
    if name in ("lora", "ia3", "prompt_tuning", "prefix_tuning"):
        import peft

        config = {
            "lora": lambda: peft.LoraConfig(task_type="SEQ_CLS", r=p.get("r", 8), lora_alpha=p.get("alpha", 16),
                                            lora_dropout=p.get("dropout", 0.1),
                                            target_modules=p.get("target_modules", ["query", "value"])),
            "ia3": lambda: peft.IA3Config(task_type="SEQ_CLS"),
            "prompt_tuning": lambda: peft.PromptTuningConfig(
                task_type="SEQ_CLS", num_virtual_tokens=p.get("num_virtual_tokens", 10),
                prompt_tuning_init="TEXT", tokenizer_name_or_path=str(base_path),
                prompt_tuning_init_text=p.get("init_text", "Is this movie review positive or negative?")),
            "prefix_tuning": lambda: peft.PrefixTuningConfig(task_type="SEQ_CLS",
                                                             num_virtual_tokens=p.get("num_virtual_tokens", 10)),
        }[name]()
        return peft.get_peft_model(model, config)
    import adapters

    config = {
        "bottleneck_adapter": lambda: (adapters.SeqBnConfig if p.get("variant", "pfeiffer") == "pfeiffer"
                                       else adapters.DoubleSeqBnConfig)(reduction_factor=p.get("reduction_factor", 16)),
        "lora_prompt": lambda: adapters.ConfigUnion(adapters.LoRAConfig(r=p.get("r", 8), alpha=p.get("alpha", 16)),
                                                    adapters.PromptTuningConfig(prompt_length=p.get("prompt_length", 10))),
        "unipelt": lambda: adapters.UniPELTConfig(
            prefix_tuning=adapters.PrefixTuningConfig(prefix_length=p.get("prefix_length", 10)),
            adapter=adapters.SeqBnConfig(reduction_factor=p.get("reduction_factor", 16)),
            lora=adapters.LoRAConfig(r=p.get("lora_r", 8), alpha=2)),
    }[name]()
    adapters.init(model)
    model.add_adapter("task", config=config)
    model.train_adapter("task")
    model.classifier.requires_grad_(True)     # train_adapter freezes a standard head
    return model


def train_seconds(model, texts: list[str], labels: list[int], tokenizer, max_length: int, batch_size: int,
                  learning_rate: float, steps: int, seed: int, adapters_lib: bool,
                  group_by_length: bool = False, bf16: bool = False) -> float:
    """Tokenize, then `trainer.train()` for `steps` steps; returns the seconds of train() alone.
    Never evaluates, logs or saves inside the timed steps. `group_by_length`: the flag a user who
    cares about speed sets (batches of similar lengths pad less), like adaptflow's loop does.
    `bf16`: Trainer's bf16 autocast (its default optimizer is already fused AdamW with torch 2.8+)."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    enc = tokenizer(texts, truncation=True, max_length=max_length)
    dataset = [{"input_ids": ids, "attention_mask": mask, "labels": y}
               for ids, mask, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
            weight_decay=0.01, lr_scheduler_type="linear", warmup_steps=int(0.06 * steps), max_steps=steps,
            seed=seed, use_cpu=True, report_to=[], save_strategy="no", eval_strategy="no",
            logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, group_by_length=group_by_length,
            bf16=bf16)
        if adapters_lib:
            from adapters import AdapterTrainer as TrainerClass
        else:
            TrainerClass = Trainer
        trainer = TrainerClass(model=model, args=args, train_dataset=dataset,
                               data_collator=DataCollatorWithPadding(tokenizer))
        trainer.remove_callback(PrinterCallback)   # its end-of-training dict would clutter the table
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


ADAPTERS_LIB = {"bottleneck_adapter", "lora_prompt", "unipelt"}
