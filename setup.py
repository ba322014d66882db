"""Installs vgrow_tf: `pip install -e .[test]`."""
from setuptools import find_packages, setup

setup(
    name="vgrow_tf",
    version="0.1.0",
    description=("TensorFlow 2 / Keras 3 ports of VGrow-PG, MSG-StyleGAN, GLO, SCoGAN/CoGAN "
                 "and DGflow, with StyleGAN-compatible datasets, metrics and sampling tools."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["vgrow_tf", "vgrow_tf.*"]),
    py_modules=["dataset_tool", "train", "run_metrics", "generate_samples"],
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.23",
        "tensorboard>=2.16",
        "keras>=3.0,<4",
        "tensorflow-datasets>=4.9,<5",
        "numpy>=1.24,<3",
        "pillow>=9.0",
        "h5py>=3.8",
        "absl-py>=1.4",
        "imageio>=2.28,<3",
        "imageio-ffmpeg>=0.4.8",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "tqdm>=4.64",
    ],
    extras_require={
        "test": ["pytest>=7.4", "pytest-timeout>=2.1"],
        "lsun": ["lmdb>=1.4"],
    },
)
