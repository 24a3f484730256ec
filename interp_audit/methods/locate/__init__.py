"""Locate methods: exact patching, path patching (attribution and SAE features come next)."""
