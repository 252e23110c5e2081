"""Offline, local AI pieces: embeddings and token counting with no network and no torch."""
