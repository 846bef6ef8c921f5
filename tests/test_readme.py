"""``--readme``: a job's table goes between two marker lines of a Markdown
file, replacing the old table whole; a file without the markers is a clear
error before any Ray work, and the file is left as it was."""

import os

import pytest

from reconlab import readme
from reconlab.errors import InputError

BEGIN, END = readme.markers("t")


def test_write_block_replaces_only_the_marked_block(tmp_path):
    p = tmp_path / "README.md"
    p.write_text(f"# title\n\nintro\n{BEGIN}\n| old |\n{END}\n\nafter\n")
    os.chmod(p, 0o640)
    readme.write_block(str(p), "t", "| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert p.read_text() == f"# title\n\nintro\n{BEGIN}\n| a | b |\n|---|---|\n| 1 | 2 |\n{END}\n\nafter\n"
    readme.write_block(str(p), "t", "| again |")
    assert p.read_text() == f"# title\n\nintro\n{BEGIN}\n| again |\n{END}\n\nafter\n"
    assert os.stat(p).st_mode & 0o777 == 0o640 and sorted(os.listdir(tmp_path)) == ["README.md"]


@pytest.mark.parametrize("text", ["no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n", f"{BEGIN}\n"])
def test_a_file_without_one_ordered_marker_pair_is_an_error_and_untouched(tmp_path, text):
    p = tmp_path / "README.md"
    p.write_text(text)
    with pytest.raises(InputError, match=r"key '--readme' = '.*README.md': needs one '<!-- reconlab:t -->' line"):
        readme.write_block(str(p), "t", "| x |")
    assert p.read_text() == text and os.listdir(tmp_path) == ["README.md"]


def test_the_xor_job_checks_its_readme_before_ray(tmp_path, capsys):
    import ray

    from reconlab.studies.xor import STUDY
    from reconlab.sweep.study import run_study

    missing = tmp_path / "nope.md"
    plain = tmp_path / "plain.md"
    plain.write_text("# no markers\n")
    for path, why in ((missing, "cannot read"), (plain, "needs one '<!-- reconlab:xor-table-i -->' line")):
        assert run_study(STUDY, ["--smoke-test", "--storage-path", str(tmp_path / "s"), "--readme", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: key '--readme' = '{path}': {why}") and "\n" not in err
    assert not ray.is_initialized() and not (tmp_path / "s" / "mlflow.db").exists()
