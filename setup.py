"""For tools that still run ``setup.py`` (``python setup.py --version``, old installers): it builds from
``pyproject.toml``, the one place the package's metadata is written, so every tool reads the same."""

import sys

import setuptools

if int(setuptools.__version__.split(".")[0]) < 77:  # pyproject.toml's build-system; older ones cannot read it
    sys.exit(f"longpoll's metadata (pyproject.toml) needs setuptools 77 or later, not {setuptools.__version__}: "
             "pip install -U 'setuptools>=77'")

setuptools.setup()
