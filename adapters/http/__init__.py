"""The OpenAI-compatible HTTP adapter (imported by submodule)."""
