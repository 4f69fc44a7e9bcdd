"""What serving pays per batch for many versions on one base, measured on a run's saved version
(tasks/training/switching.py): real PEFT versions on a tiny BERT, attached as serving attaches them."""
from __future__ import annotations

import numpy as np
from conftest import saved_version

from tasks.models.base import load_base
from tasks.models.encoding import encode
from tasks.models.loading import load_tokenizer
from tasks.training.switching import switching_metrics


def test_switch_and_mixed_pass_figures_for_sharing_strategies_only(tiny_bert, tmp_path):
    base = load_base(str(tiny_bert))
    tokenizer = load_tokenizer(tiny_bert)
    texts = ["a gripping film", "dull and far too long", "fine"] * 6
    data = encode(tokenizer, texts, np.zeros(len(texts), dtype=np.int64), 32)
    lora = switching_metrics(saved_version(tmp_path, base, "lora", 0), base, data, tokenizer.pad_token_id, False)
    assert set(lora) == {"switch_ms", "switch_ms_per_version", "mixed_ms_per_version"}
    assert lora["switch_ms"] > 0 and lora["switch_ms_per_version"] >= 0 and lora["mixed_ms_per_version"] >= 0
    ia3 = switching_metrics(saved_version(tmp_path, base, "ia3", 0), base, data, tokenizer.pad_token_id, False)
    assert set(ia3) == {"switch_ms", "switch_ms_per_version"}          # IA3 cannot mix in PEFT 0.21
    # generating versions are served one per batch: no mixed figure
    assert "mixed_ms_per_version" not in switching_metrics(saved_version(tmp_path, base, "lora", 1), base, data,
                                                           tokenizer.pad_token_id, True)
    full = switching_metrics(saved_version(tmp_path, base, "full_finetune", 0), base, data, tokenizer.pad_token_id,
                             False)
    assert full == {}                                                   # a model of its own: no switch
