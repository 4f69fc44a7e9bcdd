"""Base models: resolving `model.base` to a folder (packaged or the user's), fingerprints, loading
tokenizers and classifiers, the SmolLM2 causal LM, and tokenizing into padded batches.
Must not import any other tasks package: everything else builds on this one."""
