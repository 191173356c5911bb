"""Layer control: freezing, gradual unfreezing, re-initialisation, applied in that order (`freeze:`, `reinit:`)."""
