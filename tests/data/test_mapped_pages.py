"""Releasing the pages of memory-mapped Arrow files: resident set down, data intact."""

from __future__ import annotations

import sys

import datasets
import numpy as np
import pytest
import torch

from koin_hf.data import mapped_pages, transforms
from koin_hf.data.mapped_pages import MappedPageReleaser, dataset_files, releasing_pages

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's"
)

# 32 MiB of payload: the kernel maps a whole page-cache folio (up to hundreds of KiB) around each
# row read, so the file must be much larger than what a few rows leave resident.
ROWS, ROW_BYTES = 2000, 16384


@pytest.fixture()
def mapped(tmp_path, monkeypatch):
    """A dataset saved to disk and loaded back memory-mapped, rows of distinct random bytes.

    Small files are left alone in use; these tests release any size.
    """
    monkeypatch.setattr(mapped_pages, "MIN_MAPPED_BYTES", 0)
    rng = np.random.default_rng(0)
    payload = [rng.bytes(ROW_BYTES) for _ in range(ROWS)]
    datasets.Dataset.from_dict({"blob": payload, "index": list(range(ROWS))}).save_to_disk(
        tmp_path / "ds"
    )
    return datasets.load_from_disk(tmp_path / "ds"), payload


def test_release_drops_the_resident_pages_and_keeps_the_data(mapped):
    dataset, payload = mapped
    releaser = MappedPageReleaser(dataset_files(dataset))
    assert releaser.active and releaser.mapped_ranges()
    for batch in dataset.iter(batch_size=500):  # touch every page
        assert batch["blob"][0]
    before = releaser.resident_bytes()
    assert before >= ROWS * ROW_BYTES * 0.9
    released = releaser.release()
    assert released >= ROWS * ROW_BYTES
    assert releaser.resident_bytes() < 64 * 1024
    # The mapping is still valid: reading again faults the pages back in, with the same bytes.
    assert dataset[ROWS - 1]["blob"] == payload[ROWS - 1]
    assert dataset[123]["blob"] == payload[123]


def test_files_not_mapped_by_this_process_release_nothing(tmp_path):
    releaser = MappedPageReleaser([tmp_path / "never-opened.arrow"])
    assert releaser.mapped_ranges() == []
    assert releaser.release() == 0
    assert not MappedPageReleaser([]).active


def _resident_in_this_process(batch):
    """A transform reporting what it sees: the rows, and the mapping's resident bytes here."""
    return {
        "index": batch["index"],
        "resident": [MAPPED.resident_bytes()] * len(batch["index"]),
    }


MAPPED: MappedPageReleaser  # set by the test below, before the transform runs


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 1])
def test_applied_transform_keeps_an_epoch_resident_set_flat(mapped, num_workers):
    global MAPPED
    dataset, _ = mapped
    MAPPED = MappedPageReleaser(dataset_files(dataset))
    transforms.apply_transform(dataset, _resident_in_this_process)
    batch_size = 8
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=num_workers,
        collate_fn=lambda rows: rows,
    )
    seen, peak = [], 0
    for rows in loader:
        seen += [row["index"] for row in rows]
        peak = max(peak, max(row["resident"] for row in rows))
    assert sorted(seen) == list(range(ROWS))  # every row once, none lost
    # Without releasing, the whole 32 MiB would be resident by the end of the epoch.
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB resident in the reading process"


def test_releasing_pages_is_a_no_op_without_mapped_files():
    def transform(batch):
        return batch

    in_memory = datasets.Dataset.from_dict({"x": [1, 2]})
    assert releasing_pages(transform, in_memory) is transform


def test_small_files_are_left_alone(mapped, monkeypatch):
    """Below MIN_MAPPED_BYTES in all, releasing only costs re-faults: the transform is unchanged."""
    dataset, _ = mapped

    def transform(batch):
        return batch

    monkeypatch.setattr(mapped_pages, "MIN_MAPPED_BYTES", ROWS * ROW_BYTES * 2)
    assert not MappedPageReleaser(dataset_files(dataset)).active
    assert releasing_pages(transform, dataset) is transform
    monkeypatch.setattr(mapped_pages, "MIN_MAPPED_BYTES", ROWS * ROW_BYTES // 2)
    assert releasing_pages(transform, dataset) is not transform


def test_the_environment_switch_turns_it_off(mapped, monkeypatch):
    dataset, _ = mapped
    monkeypatch.setenv(mapped_pages.SWITCH_VARIABLE, "0")
    assert not MappedPageReleaser(dataset_files(dataset)).active
    monkeypatch.setenv(mapped_pages.SWITCH_VARIABLE, "1")
    assert MappedPageReleaser(dataset_files(dataset)).active
