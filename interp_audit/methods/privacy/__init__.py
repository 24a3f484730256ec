"""Privacy methods: memorization (canary exposure, extraction), membership inference, weight
edits."""
