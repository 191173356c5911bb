"""The optimizer and its parameter groups, layer-wise LRs included (`optimizer:`, `layer_lr:`)."""
