"""Calibration: temperature scaling fitted on the validation split, measured, folded into the head."""
