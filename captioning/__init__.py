"""Recaptions of kept samples by vision-language models."""
