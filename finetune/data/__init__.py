"""Data: files or hub datasets -> checked, tokenized data sets; samplers; token-level data (`data:`)."""
