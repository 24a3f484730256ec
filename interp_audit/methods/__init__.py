"""Methods built on the engine: locate (patching, attribution, edges), features (SAEs) and
privacy (memorization, membership, weight edits)."""
