"""Evaluation metrics: FID, KID, IS, precision/recall, PPL (issue 7)."""
