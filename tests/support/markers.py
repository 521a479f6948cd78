"""Marks for tests that need a program the machine may lack."""

import shutil

import pytest

requires_wsclean = pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean is not installed (make test installs it)")
