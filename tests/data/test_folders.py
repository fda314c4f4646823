"""Folders to cohorts: runners from subfolders or a manifest, skipped files, the parse cache."""

import csv

import numpy as np
import pytest

pytest.importorskip("fit_tool", reason="writing test FIT files needs fit-tool (`test` extra)")

from fit_tool.profile.profile_type import Gender, Sport  # noqa: E402

from tests.data.test_garmin_fit import RUN, broken_fit_files, write_fit  # noqa: E402
from wearjax.data import folders  # noqa: E402
from wearjax.data.folders import load_folder, read_file  # noqa: E402
from wearjax.data.types import stack_sessions  # noqa: E402
from wearjax.errors import WearjaxFileError  # noqa: E402

LONG = 90  # seconds per recording: above the 60 s minimum session length


def _run(t_len, hr0, speed=3.0):
    return [dict(t=t, heart_rate=hr0 + t % 7, enhanced_speed=speed) for t in range(t_len)]


def _csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "heart_rate", "enhanced_speed", "cadence"])
        w.writerows(rows)
    return path


def _mixed_folder(root):
    """ann/: a FIT run and a CSV run; bob/: a multisport FIT, broken files and a note."""
    (root / "ann").mkdir(parents=True)
    (root / "bob").mkdir()
    good = write_fit(root / "ann" / "a1.fit", _run(LONG, 120), RUN)
    _csv(root / "ann" / "a2.csv", [[t, 130, 3.2, 85] for t in range(LONG)])
    sessions = [(Sport.RUNNING, 0, LONG - 1), (Sport.CYCLING, LONG, 2 * LONG - 1)]
    profile = dict(height=1.7, weight=60.0, age=40, gender=Gender.FEMALE)
    write_fit(root / "bob" / "b1.fit", _run(2 * LONG, 140), sessions, profile)
    broken = broken_fit_files(root / "bob", good.read_bytes())
    (root / "bob" / "notes.txt").write_text("hello")
    (root / ".hidden.fit").write_bytes(b"")
    return broken


def test_mixed_folder_loads_good_files_and_lists_skipped(tmp_path):
    broken = _mixed_folder(tmp_path / "runs")
    sessions, skipped = load_folder(tmp_path / "runs", cache_dir=tmp_path / "cache")
    assert [(s.runner, s.workout) for s in sessions] == [
        ("ann", "a1"),
        ("ann", "a2"),
        ("bob", "b1#1"),
    ]
    assert sessions[2].length == LONG
    np.testing.assert_allclose(sessions[2].subject, [1.7, 60.0, 40.0, 0.0], rtol=1e-6)
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == set(broken) | {"notes.txt"}
    assert reasons["truncated.fit"].startswith("truncated FIT file")
    assert reasons["flipped.fit"].startswith("corrupted FIT file")
    assert reasons["empty.fit"].startswith("the file is empty")
    assert reasons["text.fit"].startswith("not a FIT file")
    assert reasons["notes.txt"].startswith("unsupported file type '.txt'")
    cohort = stack_sessions([s for s in sessions if s.channels == sessions[0].channels], bucket=60)
    assert cohort.runner_names == ("ann", "bob")


def test_short_and_reversed_files_are_skipped_with_their_reasons(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for name in ("long1", "long2", "long3"):
        _csv(root / f"{name}.csv", [[t, 130 + t % 5, 3.0, 85] for t in range(300)])
    _csv(root / "short.csv", [[t, 130, 3.0, 85] for t in range(30)])
    _csv(root / "reversed.csv", [[t, 130, 3.0, 85] for t in range(299, -1, -1)])
    for _ in range(2):  # parsed, then from the cache
        sessions, skipped = load_folder(root, cache_dir=tmp_path / "cache")
        assert [(s.workout, s.length) for s in sessions] == [
            ("long1", 300),
            ("long2", 300),
            ("long3", 300),
        ]
        assert [(s.path.name, s.reason) for s in skipped] == [
            (
                "reversed.csv",
                "timestamps are not increasing: 299 of 299 steps between records go backwards; "
                "sort the rows by time or export again",
            ),
            (
                "short.csv",
                "the recording spans 30 s (30 records); need at least 60 s; use a longer "
                "recording, or check that its timestamps advance",
            ),
        ]


def test_second_load_reads_the_cache_not_the_files(tmp_path, monkeypatch):
    _mixed_folder(tmp_path / "runs")
    cache = tmp_path / "cache"
    first, skipped = load_folder(tmp_path / "runs", cache_dir=cache)
    # Three parsed files and four broken ones (an empty file is never parsed).
    assert len(list(cache.glob("*.npz"))) == 7

    def parse(*args, **kwargs):
        raise AssertionError("the parser ran on a cached file")

    monkeypatch.setattr(folders, "read_file", parse)
    second, skipped_again = load_folder(tmp_path / "runs", cache_dir=cache)
    assert skipped_again == skipped
    assert len(second) == len(first)
    for a, b in zip(first, second, strict=True):
        assert (a.runner, a.workout, a.source, a.channels) == (
            b.runner,
            b.workout,
            b.source,
            b.channels,
        )
        for name in ("x", "hr", "vo2", "mask", "vo2_mask", "subject"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # A copy under another name and runner is found in the cache under its own names.
    (tmp_path / "runs" / "cat").mkdir()
    (tmp_path / "runs" / "cat" / "copy.fit").write_bytes(
        (tmp_path / "runs" / "ann" / "a1.fit").read_bytes()
    )
    third, _ = load_folder(tmp_path / "runs", cache_dir=cache)
    copy = next(s for s in third if s.runner == "cat")
    assert copy.workout == "copy" and copy.source.endswith("copy.fit")
    np.testing.assert_array_equal(copy.hr, first[0].hr)


def test_manifest_names_runners_and_subjects(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    write_fit(root / "x.fit", _run(LONG, 120), RUN)
    _csv(root / "y.csv", [[t, 125, 3.0, 85] for t in range(LONG)])
    _csv(root / "z.csv", [[t, 125, 3.0, 85] for t in range(LONG)])
    manifest = root / "manifest.csv"
    manifest.write_text(
        "file,runner,height_m,weight_kg,age_years,sex\n"
        "x.fit,r1,1.80,75,30,M\ny.csv,r2,,,,F\nmissing.fit,r3,,,,\n"
    )
    sessions, skipped = load_folder(root, manifest=manifest, cache_dir=tmp_path / "cache")
    assert [(s.runner, s.workout) for s in sessions] == [("r1", "x"), ("r2", "y")]
    np.testing.assert_allclose(sessions[0].subject, [1.8, 75, 30, 1], rtol=1e-6)
    np.testing.assert_array_equal(sessions[1].subject, [np.nan, np.nan, np.nan, 0])
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons == {
        "z.csv": f"not listed in the manifest {manifest}",
        "missing.fit": f"listed in the manifest {manifest} but missing",
    }
    # as Excel writes it in a European locale: `;`, decimal commas, a cp1252 runner name; and
    # as "Unicode Text": UTF-16 with tabs
    excel = tmp_path / "excel.csv"
    excel.write_bytes(
        "file;runner;height_m;weight_kg;age_years;sex\nx.fit;Jürgen;1,80;75,5;30;M\n".encode(
            "cp1252"
        )
    )
    sessions_excel = load_folder(root, manifest=excel, cache_dir=tmp_path / "cache")[0]
    assert [s.runner for s in sessions_excel] == ["Jürgen"]
    np.testing.assert_allclose(sessions_excel[0].subject, [1.8, 75.5, 30, 1], rtol=1e-6)
    unicode = tmp_path / "unicode.csv"
    unicode.write_bytes("file\trunner\theight_m\nx.fit\tr1\t1,80\n".encode("utf-16"))
    one = load_folder(root, manifest=unicode, cache_dir=tmp_path / "cache")[0]
    assert [s.runner for s in one] == ["r1"] and one[0].subject[0] == np.float32(1.8)
    bad = tmp_path / "bad_manifest.csv"
    bad.write_text("path,athlete\nx.fit,r1\n")
    with pytest.raises(WearjaxFileError, match=r"bad_manifest\.csv: manifest .*\['file', 'runner'"):
        load_folder(root, manifest=bad, cache_dir=tmp_path / "cache")


def test_files_in_the_folder_itself_belong_to_a_runner_named_after_it(tmp_path):
    root = tmp_path / "kim"
    root.mkdir()
    write_fit(root / "run.fit", _run(LONG, 120), RUN)
    (s,), skipped = load_folder(root, cache_dir=root / ".cache")
    assert s.runner == "kim" and skipped == []


def test_require_hr_skips_files_without_heart_rate(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    write_fit(root / "hr.fit", _run(LONG, 120), RUN)
    write_fit(root / "nohr.fit", [dict(t=t, enhanced_speed=3.0) for t in range(LONG)], RUN)
    sessions, skipped = load_folder(root, cache_dir=tmp_path / "cache", require_hr=True)
    assert [s.workout for s in sessions] == ["hr"]
    assert [(s.path.name, s.reason) for s in skipped] == [
        (
            "nohr.fit",
            "session 'nohr' has no heart rate; record with an HR sensor, or read with "
            "require_hr=False to use it without HR",
        )
    ]


def test_a_folder_with_nothing_usable_raises_naming_it(tmp_path):
    root = tmp_path / "junk"
    root.mkdir()
    (root / "a.fit").write_text("not a fit file")
    (root / "b.csv").write_bytes(b"")
    with pytest.raises(WearjaxFileError, match=r"junk: no usable recording \(2 files skipped: a"):
        load_folder(root, cache_dir=tmp_path / "cache")
    with pytest.raises(WearjaxFileError, match=r"nowhere: not a folder"):
        load_folder(tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    with pytest.raises(WearjaxFileError, match=r"a\.kml: unsupported file type '\.kml'"):
        read_file(root / "a.kml")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "x.fit,r1,180,70,30,M",
            r"line 2: height_m is 180, outside 0\.5-2\.5 m; give height_m in m",
        ),
        ("x.fit,r1,1.8,inf,30,M", r"line 2: weight_kg is inf, outside 20-300 kg"),
        ("x.fit,r1,1.8,70,-5,M", r"line 2: age_years is -5, outside 5-110 years"),
    ],
)
def test_manifest_subject_values_out_of_range_are_refused(tmp_path, row, message):
    root = tmp_path / "flat"
    root.mkdir()
    write_fit(root / "x.fit", _run(LONG, 120), RUN)
    manifest = root / "manifest.csv"
    manifest.write_text("file,runner,height_m,weight_kg,age_years,sex\n" + row + "\n")
    with pytest.raises(WearjaxFileError, match=r"manifest\.csv: " + message):
        load_folder(root, manifest=manifest, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_cache_entry_is_read_again_from_the_file(tmp_path, damage, caplog):
    root = tmp_path / "runs" / "ann"
    root.mkdir(parents=True)
    _csv(root / "a.csv", [[t, 130, 3.2, 85] for t in range(LONG)])
    cache = tmp_path / "cache"
    (first,), _ = load_folder(tmp_path / "runs", cache_dir=cache)
    (entry,) = cache.glob("*.npz")
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"PK\x03\x04" + data[9:])
    (again,), skipped = load_folder(tmp_path / "runs", cache_dir=cache)
    assert not skipped and "ignoring unreadable cache entry" in caplog.text
    np.testing.assert_array_equal(again.hr, first.hr)


def test_an_unusable_sidecar_is_named_and_a_running_csv_ignores_it(tmp_path):
    """A running export reads whatever lies beside it as NAME.hr.csv; a sampled recording's
    unusable sidecar skips the recording with the sidecar's name in the reason."""
    root = tmp_path / "runs" / "ann"
    root.mkdir(parents=True)
    _csv(root / "run.csv", [[t, 130, 3.2, 85] for t in range(LONG)])
    (root / "run.hr.csv").write_bytes(b"")
    with open(root / "wrist.csv", "w", newline="") as f:
        csv.writer(f).writerows([["time", "ppg"], *[[t / 32, 0.1] for t in range(32 * 70)]])
    (root / "wrist.hr.csv").write_text("time;hr\n")
    sessions, skipped = load_folder(tmp_path / "runs", cache_dir=tmp_path / "cache")
    assert [s.workout for s in sessions] == ["run"]
    ((path, reason),) = [(s.path.name, s.reason) for s in skipped]
    assert path == "wrist.csv" and reason.startswith("wrist.hr.csv: "), reason


def test_a_sidecar_named_in_other_case_is_read(tmp_path):
    """`wrist.HR.csv` beside `wrist.csv`: the folder listing took it for a sidecar (and left it
    out) while the reader looked only for `wrist.hr.csv`, so until 2026-12-07 the recording
    was read without its reference HR and nothing said so."""
    root = tmp_path / "runs" / "ann"
    root.mkdir(parents=True)
    with open(root / "wrist.csv", "w", newline="") as f:
        csv.writer(f).writerows([["time", "ppg"], *[[t / 32, 0.1] for t in range(32 * 70)]])
    (root / "wrist.HR.csv").write_text("time,hr\n" + "".join(f"{t},{100 + t}\n" for t in range(70)))
    (s,), skipped = load_folder(tmp_path / "runs", cache_dir=tmp_path / "cache")
    assert not skipped
    np.testing.assert_array_equal(s.hr, 100 + np.arange(70))


def test_a_missing_package_is_not_cached_as_the_files_fault(tmp_path, monkeypatch):
    """A FIT file read without Garmin's SDK is skipped with `pip install` as the fix; once the
    SDK is installed the next read must parse it, not replay the cached error."""
    root = tmp_path / "runs"
    root.mkdir()
    write_fit(root / "a.fit", _run(LONG, 120), RUN)
    real = folders.read_file

    def without_sdk(path, **kwargs):
        try:
            raise ImportError("No module named 'garmin_fit_sdk'")
        except ImportError as err:
            raise WearjaxFileError(
                path, "reading FIT files needs Garmin's SDK", "pip install"
            ) from err

    monkeypatch.setattr(folders, "read_file", without_sdk)
    with pytest.raises(WearjaxFileError, match="no usable recording"):
        load_folder(root, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(folders, "read_file", real)
    sessions, skipped = load_folder(root, cache_dir=tmp_path / "cache")
    assert [s.length for s in sessions] == [LONG] and not skipped
