"""Domain classifier for SCoGAN's semantic loss. Skeleton; filled in by issue 6."""
KIND = "classifier"
KINDS = (KIND,)
OPTIONS = []
