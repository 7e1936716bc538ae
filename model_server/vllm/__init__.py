"""The vLLM implementation of the engine protocol."""
