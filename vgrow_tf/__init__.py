"""vgrow_tf: TensorFlow 2 / Keras 3 home of VGrow-PG, MSG-StyleGAN, GLO, SCoGAN/CoGAN and DGflow.

The programs (vgrow_tf.cli) start TensorFlow quietly; importing the package changes no settings.
"""

__version__ = "0.1.0"
