"""The command line: the `escrow` program, one module per group of subcommands."""
