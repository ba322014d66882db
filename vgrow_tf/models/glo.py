"""GLO: Generative Latent Optimization (Bojanowski et al., ICML 2018). Work in progress."""
KIND = "glo"
KINDS = (KIND,)
OPTIONS = []
