"""Scores (CLIP, aesthetic, NSFW) and the pure keep/drop decision over them."""
