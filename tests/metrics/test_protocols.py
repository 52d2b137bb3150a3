"""Named evaluation protocols and the real subset (facegan/metrics/protocols.py)."""

from __future__ import annotations

import numpy as np
import pytest

from facegan.metrics import PROTOCOLS, parse_metrics
from facegan.metrics.protocols import real_indices

pytestmark = pytest.mark.usefixtures("one_thread", "short_embedding")


def test_protocols_and_real_subset() -> None:
    assert [p.name for p in parse_metrics("FID10k, kid10k,fid10k")] == ["fid10k", "kid10k"]
    assert {"fid2k", "fid10k", "fid50k", "kid10k", "c2st"} <= set(PROTOCOLS)
    np.testing.assert_array_equal(real_indices(5, 10), np.arange(5))
    idx = real_indices(1000, 100)
    assert len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, real_indices(1000, 100))
