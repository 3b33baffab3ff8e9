"""The audience stubs' fixtures, for the portal's audiences page."""

from tests.audiences.conftest import yandex_stub  # noqa: F401  (a fixture)
