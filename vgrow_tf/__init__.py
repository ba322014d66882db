"""vgrow_tf: TensorFlow 2 / Keras 3 home of VGrow-PG, MSG-StyleGAN, GLO, SCoGAN/CoGAN and DGflow."""
import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries our one-line messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
