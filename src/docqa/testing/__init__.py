"""Generators of test material: small PDFs and random-weight Llama models, used by tests and benchmarks."""
