"""The llama.cpp adapter: models, contexts, sequences, sampling, chat templates, decoding."""
