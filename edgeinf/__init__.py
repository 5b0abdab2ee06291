"""edgeinf: an inference runtime for machines without a datacenter GPU."""

__version__ = "0.1.0"
