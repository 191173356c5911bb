"""The model: loading, the anatomy of each architecture, PEFT adapters, the prefix cache (`model:`, `peft:`)."""
