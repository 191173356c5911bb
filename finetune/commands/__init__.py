"""The subcommands of `finetune`: each module adds its commands' arguments to the parser and holds
the functions that run them (cli.py builds the parser and calls one). Heavy libraries are imported
inside the functions, so `finetune --help` answers at once."""
