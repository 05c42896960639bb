"""Exact, caption (MinHash LSH) and image near-duplicate detection, and global clusters."""
