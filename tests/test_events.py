"""The event reader against TensorBoard's own EventAccumulator, on files SummaryWriter wrote."""

import math
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter

from av_td3.analysis import events
from av_td3.analysis.events import EventFileError


def accumulate(path):
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    out = {t: [(e.step, e.value, e.wall_time) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
    for t in ea.Tags()["tensors"]:
        out[t] = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item(), e.wall_time)
                  for e in ea.Tensors(t)]
    return out


def assert_same(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for tag, points in theirs.items():
        points = sorted(points, key=lambda p: p[0])
        steps, values, walls = (np.array(x) for x in zip(*points))
        np.testing.assert_array_equal(ours[tag].steps, steps, err_msg=tag)
        np.testing.assert_array_equal(ours[tag].values, values.astype(np.float64), err_msg=tag)
        np.testing.assert_array_equal(ours[tag].wall_times, walls, err_msg=tag)


def test_round_trip_matches_event_accumulator(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        for step in range(0, 200):
            w.add_scalar("debug/actor_grad_norm_BEFORE_clip", math.sin(step) * 10, step)
            w.add_scalar("train/q1_value", -1e30 if step == 3 else step * 0.1, step * 2**33)  # long varints
            special = {7: float("nan"), 8: float("inf")}
            w.add_scalar("train/actor_loss", special.get(step, step), step)
            w.add_scalar("eval/new_style", step / 3, step, new_style=True)
            w.add_scalar("eval/double", step / 7, step, new_style=True, double_precision=True)
        w.add_scalar("ünïcode/tag", 1.5, 5)
        w.add_text("notes", "not a scalar", 0)
        w.add_histogram("hist", np.arange(100.0), 1)
    (path,) = events.event_files(tmp_path)
    ours = events.read_scalars([path])
    theirs = accumulate(path)
    assert "notes/text_summary" in theirs  # a string tensor: TensorBoard keeps it, we do not
    theirs.pop("notes/text_summary")
    assert_same(ours, theirs)
    assert ours["train/actor_loss"].values.dtype == np.float64
    assert ours["train/q1_value"].steps.dtype == np.int64
    # a tag filter returns only those tags
    assert list(events.read_scalars([path], ["eval/double"])) == ["eval/double"]


def test_resumed_run_newest_file_wins(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        for step in range(1, 31):
            w.add_scalar("a", step, step)
            w.add_scalar("b", step, step)
    # a resume from a checkpoint at step 20: purge_step drops the old file's later steps (even 26..30,
    # which the new session never reaches)
    with SummaryWriter(str(tmp_path), purge_step=21) as w:
        for step in range(21, 26):
            w.add_scalar("a", -step, step)
    # a third session without purge_step rewrites step 10 of b only: the newest value wins
    with SummaryWriter(str(tmp_path)) as w:
        w.add_scalar("b", 1000.0, 10)
    files = events.event_files(tmp_path)
    assert len(files) == 3
    ours = events.read_scalars(reversed(files))  # the order given does not matter
    np.testing.assert_array_equal(ours["a"].steps, np.arange(1, 26))
    np.testing.assert_array_equal(ours["a"].values, np.r_[np.arange(1, 21), -np.arange(21, 26)])
    np.testing.assert_array_equal(ours["b"].steps, np.arange(1, 21))
    assert ours["b"].values[9] == 1000.0
    # TensorBoard agrees on the purge (it keeps duplicates without one, so compare "a" only)
    theirs = accumulate(tmp_path)
    assert_same({"a": ours["a"]}, {"a": theirs["a"]})


@pytest.fixture
def event_file(tmp_path):
    with SummaryWriter(str(tmp_path)) as w:
        for step in range(100):
            w.add_scalar("x", step, step)
    return events.event_files(tmp_path)[0]


@pytest.mark.parametrize("cut", [1, 4, 13, 30])
def test_truncated_file_raises(event_file, cut):
    data = event_file.read_bytes()
    event_file.write_bytes(data[:-cut])
    with pytest.raises(EventFileError) as e:
        events.read_scalars([event_file])
    assert e.value.path == event_file and "truncated" in e.value.reason
    assert 0 < e.value.offset < len(data)


@pytest.mark.parametrize("where", [0.5, 0.25])
def test_flipped_byte_raises(event_file, where):
    data = bytearray(event_file.read_bytes())
    at = int(len(data) * where)
    data[at] ^= 0x20
    event_file.write_bytes(bytes(data))
    with pytest.raises(EventFileError) as e:
        events.read_scalars([event_file])
    assert "CRC" in e.value.reason and e.value.offset <= at


def test_crc_matches_reference_implementation():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    rng = np.random.default_rng(0)
    lengths = np.array([0, 1, 7, 8, 9, 63, 64, 65, 255, 256, 257, 1000, 1024, 1025, 3000])
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths]
    buf = b"".join(blobs)
    arr = np.zeros(events._LEAD + len(buf) + events._TRAIL, np.uint8)
    arr[events._LEAD:events._LEAD + len(buf)] = np.frombuffer(buf, np.uint8)
    starts = events._LEAD + np.r_[0, np.cumsum(lengths)[:-1]]
    ours = events._masked_crc32c(arr, starts, lengths)
    assert [int(x) for x in ours] == [masked_crc32c(b) for b in blobs]


def test_truncated_tail_of_a_resumed_run_is_superseded(tmp_path):
    # A run killed mid-write leaves a partial last record; the resumed session's purge_step replaces
    # everything after its checkpoint, so the older file is read up to the partial record.
    with SummaryWriter(str(tmp_path)) as w:
        for step in range(100):
            w.add_scalar("x", step, step)
    (old,) = events.event_files(tmp_path)
    old.write_bytes(old.read_bytes()[:-7])
    with pytest.raises(EventFileError):  # not resumed yet: an error, not silently partial data
        events.read_scalars([old])
    time.sleep(1.1)  # event file names carry the second
    with SummaryWriter(str(tmp_path), purge_step=50) as w:
        for step in range(50, 120):
            w.add_scalar("x", 2 * step, step)
    series = events.read_scalars(events.event_files(tmp_path))["x"]
    np.testing.assert_array_equal(series.steps, np.arange(120))
    np.testing.assert_array_equal(series.values, np.r_[np.arange(50), 2 * np.arange(50, 120)])
