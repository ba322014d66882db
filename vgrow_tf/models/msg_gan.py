"""MSG-StyleGAN and MSG-ProGAN: multi-scale-gradient GANs (Karnewar & Wang, CVPR 2020). Work in progress."""
KIND = "msg_stylegan"
KINDS = ("msg_stylegan", "msg_progan")
OPTIONS = []
