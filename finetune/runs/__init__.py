"""Run folders: results, plots, report, compare, where commands write (`output:`)."""
