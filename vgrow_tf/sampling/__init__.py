"""Sampling: image grids, videos, interpolation, latent directions and DGflow refinement."""
