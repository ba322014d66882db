"""vgrow_tf: TensorFlow 2 / Keras 3 home of VGrow-PG, MSG-StyleGAN, GLO, SCoGAN/CoGAN and DGflow."""

__version__ = "0.1.0"
