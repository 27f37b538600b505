"""Builds the optional C core (tft_lab._core); everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and tft_lab uses its
pure-Python path (tft_lab/_backend/__init__.py selects; see docs/architecture.md)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("tft_lab._core", sources=["tft_lab/_core.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall"])])
