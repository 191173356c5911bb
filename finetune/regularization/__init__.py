"""Regularization: losses and terms, Mixout, SWA, clipping, text augmentation (`regularization:`)."""
