"""Fixtures shared by the test modules."""
import pytest


@pytest.fixture(scope="session")
def digits8(tmp_path_factory):
    """The bundled digits at 8x8 as a dataset directory (read-only for the tests that use it)."""
    from vgrow_tf.data import tool
    path = str(tmp_path_factory.mktemp("data") / "digits8")
    tool.create_digits(path, resolution=8)
    return path
