"""The service layer: the one seam every shell calls (`edgeinf run`, `edgeinf chat`, the server,
route training). Shells never reach below it."""
