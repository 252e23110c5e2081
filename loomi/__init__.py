"""Process glue: the `loomi` command, the shared runtime, the embedded Redis."""
