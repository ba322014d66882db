"""DGflow: latent-space refinement of samples by a discriminator-guided gradient flow. (WIP)"""
