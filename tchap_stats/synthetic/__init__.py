"""Synthetic exports (generate) and the demo that loads them: not on the nightly path."""
