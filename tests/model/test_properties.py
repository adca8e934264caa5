"""Property-based tests (hypothesis): colour round trip, VFN padding/cropping, metric invariants."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cldyn.evaluation import metrics as M
from cldyn.model.vfn import VFN, VFNConfig

_NET = VFN(VFNConfig(num_blocks=1)).eval()


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24), b=st.integers(1, 2))
def test_vfn_keeps_any_size_and_range(h, w, b):
    with torch.no_grad():
        out = _NET(torch.rand(b, 1, h, w), torch.rand(b, 1, h, w))
    assert out.shape == (b, 1, h, w)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


_imgs = arrays(np.float64, st.tuples(st.integers(8, 20), st.integers(8, 20)),
               elements=st.integers(0, 255).map(float))


@settings(max_examples=30, deadline=None)
@given(_imgs)
def test_single_image_metric_ranges(img):
    assert 0 <= M.entropy(img) <= 8
    assert M.standard_deviation(img) >= 0 and M.spatial_frequency(img) >= 0 and M.average_gradient(img) >= 0
    # Symmetric under transposition and left-right flips.
    assert np.isclose(M.spatial_frequency(img.T), M.spatial_frequency(img))
    assert np.isclose(M.entropy(img[:, ::-1]), M.entropy(img))


@settings(max_examples=20, deadline=None)
@given(_imgs, _imgs)
def test_two_source_metrics_symmetric_in_sources(a, b):
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    a, b = a[:h, :w], b[:h, :w]
    f = np.round((a + b) / 2)
    for fn in (M.mutual_information, M.vif, M.correlation_coefficient, M.nabf, M.fmi_pixel):
        x, y = fn(f, a, b), fn(f, b, a)
        assert (np.isnan(x) and np.isnan(y)) or np.isclose(x, y, rtol=1e-9, atol=1e-12), fn.__name__
    mi = M.mutual_information(f, a, b)
    assert mi >= -1e-12
