"""`edgeinf tune`: measure the trade-offs on this device and keep the best defaults."""
