"""Knowledge distillation (`distill:`): a trained teacher's outputs, computed once, for the student's loss."""
