"""Shared fixtures. `hub`: a local Hugging Face Hub-protocol server (see tests/hub_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hub_server import HubServer  # tests/ is on sys.path (pytest's rootdir-relative import mode)


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A fresh, empty Hub on a free loopback port, its files in a temp folder; stopped afterwards."""
    with HubServer(tmp_path_factory.mktemp("hub")) as server:
        yield server
