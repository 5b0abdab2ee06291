"""The `edgeinf` command line; each command's module is imported only when it runs."""
