"""Pairs from the command line's inputs: two folders, --ir/--vis, or one dataset root."""

import shutil

import pytest

from cldyn.data.pairs import pairs_from_inputs
from cldyn.errors import CldynError


def test_three_ways_to_name_the_same_pairs(pairs_dir):
    by_root, _ = pairs_from_inputs([pairs_dir])
    by_folders, _ = pairs_from_inputs([pairs_dir / "ir", pairs_dir / "vi"])
    by_flags, _ = pairs_from_inputs([], pairs_dir / "ir", pairs_dir / "vi")
    names = sorted(p.name for p in by_root)
    assert len(names) == 2
    assert names == sorted(p.name for p in by_folders) == sorted(p.name for p in by_flags)


def test_unpaired_files_are_reported_not_fatal(tmp_path, pairs_dir):
    shutil.copytree(pairs_dir, tmp_path / "d")
    victim = sorted((tmp_path / "d" / "vi").iterdir())[0]
    victim.unlink()
    pairs, problems = pairs_from_inputs([tmp_path / "d"])
    assert len(pairs) == 1 and len(problems) == 1 and victim.stem in str(problems[0])


@pytest.mark.parametrize("inputs, ir, vis", [([], "a", None), (["x"], "a", "b"), (["a", "b", "c"], None, None)])
def test_wrong_combinations_say_what_is_expected(inputs, ir, vis):
    with pytest.raises(CldynError, match="--ir DIR"):
        pairs_from_inputs(inputs, ir, vis)
