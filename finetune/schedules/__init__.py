"""Learning-rate schedules: the formulas, the torch scheduler, the plot (`schedule:`)."""
