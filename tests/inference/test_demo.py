"""The demo sheet: rows scaled to one width, titled with the pair and its dataset."""

from pathlib import Path

import numpy as np

from cldyn.data.pairs import Pair, dataset_of
from cldyn.inference.demo import demo_pairs, pair_title, side_by_side


def test_rows_of_other_aspect_ratios_fill_the_width():
    wide, narrow = np.full((10, 40), 0.5), np.full((10, 20), 0.5)  # 4:1 and 2:1 panels
    sheet = side_by_side([[wide], [narrow]], labels=[], height=20, titles=["a", "b"])
    # row 1: 80x20 panel; row 2: 40x20 scaled to 80x40; each with a 26-px title bar and a 4-px gap
    assert sheet.shape == (26 + 20 + 4 + 26 + 40 + 4, 80, 3)
    assert not (sheet[:, -1] > 0.99).all(axis=-1)[26:46].any()  # no blank strip at the right
    assert np.allclose(sheet[26 + 20 + 4 + 26:-4], 0.5, atol=1 / 255)


def test_pairs_are_named_with_their_dataset():
    assert [pair_title(p) for p in demo_pairs()] == ["msrs_00854N (MSRS)", "msrs_01506D (MSRS)",
                                                     "roadscene_FLIR_04514 (RoadScene)"]
    assert dataset_of(Pair("x", Path("/d/M3FD_Fusion/ir/x.png"), Path("/d/M3FD_Fusion/vi/x.png"))) == "M3FD"
    assert dataset_of(Pair("x", Path("/d/mine/ir/x.png"), Path("/d/mine/vi/x.png"))) == "mine"


def test_alignment_rows_register_a_redrawn_pair_and_refuse_a_dark_one():
    from cldyn.inference.demo import alignment_rows

    pairs = {p.name: p for p in demo_pairs()}
    rows, labels, titles = alignment_rows([pairs["roadscene_FLIR_04514"], pairs["msrs_00854N"]], "affine")
    assert labels == ["before registration", "after registration", "fused (VFN)"]
    assert "affine, confidence" in titles[0] and rows[0][2].max() > 0
    assert "refused" in titles[1] and rows[1][2].max() == 0  # a night pair with a dark visible image: no fusion
    assert all(panel.shape == rows[0][0].shape for panel in rows[0])
