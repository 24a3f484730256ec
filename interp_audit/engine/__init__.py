"""The engine: contrast sets, the batched patching engine, interventions (contexts that remove
their hooks), executors and the Effects result. Speaks component addresses, never a family."""
