"""CoGAN (hard weight sharing) and SCoGAN (soft, regulariser-coupled) two-domain GANs.

Skeleton; filled in by issue 6.
"""
KIND = "coupled_gan"
KINDS = ("cogan", "scogan")
OPTIONS = []
