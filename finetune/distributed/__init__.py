"""Several processes: strategies, process groups, `finetune launch` (`distributed:`)."""
