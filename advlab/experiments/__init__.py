"""Each chapter's full experiment as plain functions, shared by the notebooks and the CLI."""
