"""Reading GGUF files without llama.cpp: bounded checks before a load, and what a model is."""
