"""Tests of the offline AI building blocks (ai.local)."""
