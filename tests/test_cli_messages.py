"""What the CLI tells a user who gives it something it cannot use: each message names the
option the CLI takes (not a Python argument), the file's real kind, and leaves no empty
output folder behind. Found in a review of the CLI against the README."""

import logging

import numpy as np
import pytest

from tests.test_cli_hr import _one_line_error, write_run
from wearjax.cli import main
from wearjax.train import checkpoints


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Parsed recordings are cached under the test's own folder, not the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_runs_shorter_than_a_training_segment_name_quick(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    for i in range(4):  # 420 s: past the reader's 60 s, short of the 600 s segments
        write_run(tmp_path / "runs" / f"r{i}.csv", 420, seed=i)
    data = str(tmp_path / "runs")
    line = _one_line_error(capsys, main(["cv", "hr", "--data", data, "--out", str(tmp_path / "o")]))
    assert "0 of 4 sessions last a training segment of 600 s" in line
    assert "--quick (300 s segments)" in line and "420 s" in line
    assert not (tmp_path / "o").exists()
    line = _one_line_error(capsys, main(["fit", "hr", "--data", data, "--out",
                                         str(tmp_path / "m.wjx")]))  # fmt: skip
    assert "training needs 2" in line and "--quick" in line


def test_cpet_errors_name_cli_options_and_an_empty_out_is_not_left(tmp_path, capsys):
    folder = tmp_path / "cpet"
    folder.mkdir()
    (folder / "t1.csv").write_text("time,heart\n0,80\n1,81\n")
    out = tmp_path / "v"
    argv = ["cv", "vo2", "--data", str(folder), "--out", str(out)]
    line = _one_line_error(capsys, main(argv))
    assert "--columns" in line and "name them with columns=" not in line
    assert not out.exists()  # made by the run, left empty: removed
    line = _one_line_error(capsys, main([*argv, "--columns", "vo2"]))
    assert "--columns" in line and not out.exists()  # its syntax, before --out is made


def test_cv_virtual_on_a_folder_without_wrist_files_asks_for_them(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = ["cv", "virtual", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    line = _one_line_error(capsys, main(argv))
    assert "acc_x, acc_y, acc_z (or ppg) and hr_ref" in line and "running recordings" not in line


def test_gait_prior_with_ppg_only_is_refused(tmp_path, capsys):
    argv = ["cv", "virtual", "--data", "synthetic", "--setting", "ppg_only", "--gait",
            "--quick", "--out", str(tmp_path / "o")]  # fmt: skip
    assert "leave --gait out" in _one_line_error(capsys, main(argv))


def test_a_checkpoint_of_another_kind_says_what_it_is(tmp_path, capsys):
    from wearjax.tasks.pretrain import load_encoder

    path = checkpoints.save(tmp_path / "hr.wjx", {"task": "hr", "kind": "kalman"}, np.zeros(3))
    with pytest.raises(Exception, match=r"not an encoder: a 'hr' model \(written by `wearjax fit "
                       r"hr`\); pass a file of this kind") as err:  # fmt: skip
        load_encoder(path)
    assert "do not fit" not in str(err.value)


def test_mesh_options_are_shown_only_where_folds_train(capsys):
    for argv, shown in ((["fit", "hr", "--help"], False), (["cv", "hr", "--help"], True)):
        with pytest.raises(SystemExit):
            main(argv)
        assert ("--mesh" in capsys.readouterr().out) is shown


def test_out_of_range_hr_is_not_also_a_warning(tmp_path, caplog):
    """The CLI prints it once from the session's metadata (`reader_notes`); a logged warning
    reached the terminal a second time through Python's last-resort handler."""
    from wearjax.data.folders import read_file

    run = write_run(tmp_path / "spiky.csv", 120, seed=3)
    rows = run.read_text().splitlines()
    cells = rows[5].split(",")
    cells[1] = "300"  # heart_rate
    rows[5] = ",".join(cells)
    run.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="wearjax"):
        (session,) = read_file(run)
    assert dict(session.metadata).get("hr_out_of_range") == "1"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_hr_model_given_a_wrist_recording_names_the_right_model(tmp_path):
    from wearjax.data.sampled import read_sampled
    from wearjax.errors import WearjaxDataError
    from wearjax.tasks.hr_recordings import select_channels

    path = tmp_path / "wrist.csv"
    path.write_text("time,acc_x,acc_y,acc_z\n" + "\n".join(f"{k / 32},0,0,1" for k in range(64)))
    with pytest.raises(WearjaxDataError, match=r"sampled-signal recording \(acc\).*fit virtual"):
        select_channels(read_sampled(path), ("speed", "cadence"))
