"""Conversations and their llama.cpp sequence state, kept on disk between processes."""
