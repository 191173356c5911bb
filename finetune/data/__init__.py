"""Data (`data:`): files or hub datasets -> checked, label-encoded, tokenized splits (loading.py, from
files.py, hub.py, columns.py, labels.py, splits.py); token classification data (tokens.py); samplers."""
