"""For tools that still run `python setup.py ...`: the project is declared in pyproject.toml."""
from setuptools import setup

setup()
