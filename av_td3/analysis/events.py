"""Fast, strict reading of TensorBoard event files into per-tag numpy arrays.

TensorBoard's ``EventAccumulator`` (and tbparse, built on it) decode every record into Python objects and
take ~10 s per run of 400k scalar events. Here the work is vectorised with numpy:

1. framing: a TFRecord is ``[u64 length][u32 masked crc32c(length)][data][u32 masked crc32c(data)]``;
   walking the lengths is the one sequential step (a tight Python loop);
2. both CRCs of every record are checked at once (a table-driven crc32c vectorised over records);
3. records laid out exactly as writers emit ``simple_value`` scalars (``wall_time, step,
   summary{value{tag, simple_value}}``) are decoded by byte offsets over all records at once; anything
   else (tensor-valued scalars, TensorBoard's run-start records, other plugins) goes through the full protobuf.

A truncated or corrupt file raises ``EventFileError``: partial data is never returned silently.

Merging (a run's several files, e.g. after a resume): files are ordered by the wall time of their first
event, a ``SessionLog.START`` at step s drops every earlier event at steps >= s (what ``SummaryWriter``'s
``purge_step`` writes, and what TensorBoard honours), and on a repeated (tag, step) the later event wins.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

__all__ = ["EventFileError", "Series", "event_files", "read_scalars"]

_LEAD = 1024  # zero bytes before the file's bytes: CRC rows are left-padded into them
_TRAIL = 1024  # and after: fixed-width gathers near the end stay in bounds
_BLOCK = 1 << 18  # records decoded per vectorised block (bounds temporary memory)
_FILE_RE = re.compile(r"events\.out\.tfevents\.(\d+)")


class EventFileError(Exception):
    """An event file that cannot be read completely: truncated, corrupt or not an event file."""

    def __init__(self, path: Path | str, offset: int, reason: str):
        self.path, self.offset, self.reason = Path(path), offset, reason
        super().__init__(f"{path}: {reason} (at byte {offset})")


class Series(NamedTuple):
    """One tag's scalars, sorted by step, one value per step."""

    steps: np.ndarray  # int64
    values: np.ndarray  # float64
    wall_times: np.ndarray  # float64, seconds since the epoch


# --- crc32c (Castagnoli), vectorised over many byte strings -----------------------------------------------
# CRC arithmetic is linear over GF(2): crc_raw(init, data) = crc_raw(0, data) ^ crc_raw(init, zeros(len)).
# With init 0, leading zero bytes leave the register at 0, so strings of different lengths can be
# left-padded with zeros to one width and processed column by column, then corrected by the
# length-only term. Longer strings are split into fixed-width chunks and combined (Horner) with the
# linear map "append 1024 zero bytes".

_POLY = 0x82F63B78
_CHUNK = 1024


def _make_tables() -> list[np.ndarray]:
    t0 = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        t0[i] = c
    tables = [t0]
    for _ in range(3):  # slice-by-4: table k = byte followed by k zero bytes
        prev = tables[-1]
        tables.append((prev >> np.uint32(8)) ^ t0[prev & np.uint32(0xFF)])
    return tables


_T = _make_tables()
_T0_LIST = [int(x) for x in _T[0]]


def _zero_terms(n: int) -> np.ndarray:
    """crc_raw(0xFFFFFFFF, zeros(L)) for L = 0..n."""
    out, r = [], 0xFFFFFFFF
    for _ in range(n + 1):
        out.append(r)
        r = _T0_LIST[r & 0xFF] ^ (r >> 8)
    return np.array(out, np.uint32)


_Z = _zero_terms(_CHUNK)


def _shift_tables() -> list[list[int]]:
    """Tables of the linear map r -> crc_raw(r, zeros(_CHUNK)), one per register byte."""
    out = []
    for k in range(4):
        r = np.arange(256, dtype=np.uint32) << np.uint32(8 * k)
        for _ in range(_CHUNK):
            r = _T[0][r & np.uint32(0xFF)] ^ (r >> np.uint32(8))
        out.append([int(x) for x in r])
    return out


_SHIFT: list[list[int]] | None = None  # built on the first record longer than _CHUNK


def _crc_rows(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """crc_raw(0, s) of each ``arr[start:start+length]`` (length <= width, width % 4 == 0)."""
    pad = width - lengths
    rows = np.lib.stride_tricks.sliding_window_view(arr, width)[starts - pad]
    rows[np.arange(width)[None, :] < pad[:, None]] = 0
    words = np.ascontiguousarray(rows.view("<u4").T)  # one contiguous row per word column
    t0, t1, t2, t3 = _T
    m8, ff = np.uint32(8), np.uint32(0xFF)
    crc = np.zeros(len(starts), np.uint32)
    for w in words:
        crc ^= w
        crc = t3[crc & ff] ^ t2[(crc >> m8) & ff] ^ t1[(crc >> np.uint32(16)) & ff] ^ t0[crc >> np.uint32(24)]
    return crc


def _crc_long(arr: np.ndarray, start: int, length: int) -> int:
    global _SHIFT
    if _SHIFT is None:
        _SHIFT = _shift_tables()
    s0, s1, s2, s3 = _SHIFT
    head = length % _CHUNK or _CHUNK
    n_full = (length - head) // _CHUNK
    acc = int(_crc_rows(arr, np.array([start]), np.array([head]), _CHUNK)[0]) ^ int(_Z[head])
    if n_full:
        chunk_starts = start + head + _CHUNK * np.arange(n_full)
        rows = _crc_rows(arr, chunk_starts, np.full(n_full, _CHUNK), _CHUNK).tolist()
        for r in rows:
            acc = s0[acc & 0xFF] ^ s1[(acc >> 8) & 0xFF] ^ s2[(acc >> 16) & 0xFF] ^ s3[acc >> 24] ^ r
    return acc


def _masked_crc32c(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """TFRecord's masked crc32c of each ``arr[start:start+length]``."""
    crc = np.zeros(len(starts), np.uint32)
    # Width buckets: multiples of 16 up to 256 bytes, then powers of two: at most ~2x padding.
    width = np.where(lengths <= 256, (lengths + 15) // 16 * 16,
                     1 << np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64))
    width = np.maximum(width, 8)
    short = lengths <= _CHUNK
    for w in np.unique(width[short]):
        idx = np.flatnonzero(short & (width == w))
        for block in range(0, len(idx), _BLOCK):
            sel = idx[block:block + _BLOCK]
            crc[sel] = _crc_rows(arr, starts[sel], lengths[sel], int(w)) ^ _Z[lengths[sel]]
    for i in np.flatnonzero(~short):
        crc[i] = _crc_long(arr, int(starts[i]), int(lengths[i]))
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)


# --- one file -----------------------------------------------------------------------------------------------
class _FileEvents(NamedTuple):
    first_wall_time: float  # of the file's first event (the writer's file_version event): dates the file
    n_records: int
    tag_names: list[str]
    tag_ids: np.ndarray  # int32 index into tag_names, one per scalar
    steps: np.ndarray
    values: np.ndarray
    wall_times: np.ndarray
    order: np.ndarray  # record index in the file: the write order
    purges: list[tuple[int, int]]  # (record index, step) of each SessionLog.START
    truncated: EventFileError | None = None  # set when the file ends in a partial record (left out)


def _frame_vectorised(arr: np.ndarray, size: int) -> np.ndarray | None:
    """Record offsets without a loop, when the guess below holds; None when it does not (the caller
    then walks the lengths one by one).

    Guess: every record's data starts with 0x09 (an Event's wall_time field, which every writer sets)
    and its length fits in 32 bits. Every position satisfying that is a candidate; the guess holds iff
    the records chain exactly through the candidates: the first at 0, each one's end at the next one's
    start, the last one's end at the end of the file. A candidate inside some record's bytes, or a record
    that is no candidate, breaks the chain, so a success is exact.
    """
    if size < 16:
        return None
    body = arr[_LEAD + 12:_LEAD + size]
    cand = np.flatnonzero(body == 0x09)  # position in the file - 12
    cand = cand[np.all(_gather(arr, cand + _LEAD + 4, 4) == 0, axis=1)]
    if not len(cand) or cand[0] != 0:
        return None
    lens = _gather(arr, cand + _LEAD, 8).view("<u8").ravel().astype(np.int64)
    ends = cand + lens + 16
    if ends[-1] != size or not np.array_equal(ends[:-1], cand[1:]):
        return None
    return cand


def _frame(buf: bytes) -> np.ndarray:
    """Record offsets. Walking the length fields is inherently sequential, so this is the one Python
    loop per record; the length CRCs are checked afterwards, vectorised (``_check_lengths``)."""
    unpack = struct.Struct("<Q").unpack_from
    offsets: list[int] = []
    append = offsets.append
    pos, end = 0, len(buf)
    while pos + 12 <= end:
        append(pos)
        pos += unpack(buf, pos)[0] + 16
    if pos > end:  # the last header claims more bytes than the file holds
        raise _Truncated(offsets[-1], np.array(offsets, np.int64), "truncated record")
    if pos < end:
        raise _Truncated(pos, np.array(offsets, np.int64),
                         f"truncated record header ({end - pos} stray bytes at the end)")
    return np.array(offsets, np.int64)


class _Truncated(Exception):
    def __init__(self, offset: int, headers: np.ndarray, reason: str):
        # headers: the offsets of every complete header read, the last one included if it is complete
        self.offset, self.headers, self.reason = offset, headers, reason


def _check_lengths(path: Path, arr: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """Data lengths of the records at ``offs``; raises on the first header whose CRC is wrong."""
    if not len(offs):
        return np.empty(0, np.int64)
    hdr = arr[(offs + _LEAD)[:, None] + np.arange(12)]
    lens = np.ascontiguousarray(hdr[:, :8]).view("<u8").ravel()
    stored = np.ascontiguousarray(hdr[:, 8:]).view("<u4").ravel()
    bad = np.flatnonzero(_masked_crc32c(arr, offs + _LEAD, np.full(len(offs), 8)) != stored)
    if len(bad):
        raise EventFileError(path, int(offs[bad[0]]), "corrupt record header (length CRC mismatch)")
    return lens.astype(np.int64)


def _read_file(path: Path, wanted: set[str] | None) -> _FileEvents:
    """One file's scalars. A partial last record (a writer killed mid-write) is left out and reported in
    ``truncated``; the caller decides whether that is acceptable (see ``read_scalars``)."""
    buf = path.read_bytes()
    arr = np.zeros(_LEAD + len(buf) + _TRAIL, np.uint8)
    arr[_LEAD:_LEAD + len(buf)] = np.frombuffer(buf, np.uint8)
    truncated = None
    try:
        offs = _frame_vectorised(arr, len(buf))
        if offs is None:
            offs = _frame(buf)
    except _Truncated as t:
        # A corrupt length field also shows up as a record running past the end: blame the header
        # first if its CRC is wrong.
        _check_lengths(path, arr, t.headers)
        truncated = EventFileError(path, t.offset, f"{t.reason}; the file ends at byte {len(buf)}")
        offs = t.headers[t.headers < t.offset]  # the complete records before the partial one
    lens = _check_lengths(path, arr, offs)
    data = offs + 12 + _LEAD  # data start in arr
    stored = _gather(arr, data + lens, 4).view("<u4").ravel()
    bad = np.flatnonzero(_masked_crc32c(arr, data, lens) != stored)
    if len(bad):
        raise EventFileError(path, int(offs[bad[0]]), "corrupt record (data CRC mismatch)")

    tag_index: dict[str, int] = {}
    parts: list[tuple[np.ndarray, ...]] = []
    purges: list[tuple[int, int]] = []
    for block in range(0, len(offs), _BLOCK):
        sel = np.arange(block, min(block + _BLOCK, len(offs)))
        fast, slow = _decode_simple(arr, data[sel], lens[sel])
        if fast is not None:
            names, tag_of, steps, values, walls, rows = fast
            ids = np.array([tag_index.setdefault(n, len(tag_index)) for n in names], np.int32)[tag_of]
            parts.append((ids, steps, values, walls, sel[rows]))
        if len(slow):
            slow_part, slow_purges = _decode_proto(path, buf, offs, lens, sel[slow], tag_index)
            parts.append(slow_part)
            purges += slow_purges
    dtypes = (np.int32, np.int64, np.float64, np.float64, np.int64)
    ids, steps, values, walls, order = (np.concatenate([p[i] for p in parts]).astype(d) if parts
                                        else np.empty(0, d) for i, d in enumerate(dtypes))
    tag_names = list(tag_index)
    if wanted is not None:
        keep = np.isin(ids, [i for i, n in enumerate(tag_names) if n in wanted])
        ids, steps, values, walls, order = ids[keep], steps[keep], values[keep], walls[keep], order[keep]
    first_wall = (float(_gather(arr, data[:1] + 1, 8).view("<f8")[0, 0])
                  if len(offs) and arr[data[0]] == 0x09 else np.nan)
    return _FileEvents(first_wall, len(offs), tag_names, ids, steps, values, walls, order, purges, truncated)


def _gather(arr: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    return arr[pos[:, None] + np.arange(n)]


def _decode_simple(arr: np.ndarray, data: np.ndarray, lens: np.ndarray):
    """Decode, all at once, the records laid out as ``09 <f64 wall_time> 10 <varint step>
    2a L1 0a L2 0a L3 <tag> 15 <f32 simple_value>`` with every length consistent: exactly the bytes a
    protobuf encoder writes for such an Event, so the fields are unambiguous. Returns the decoded scalars
    (or None) and the positions of the other records."""
    ok = (lens >= 22) & (arr[data] == 0x09) & (arr[data + 9] == 0x10)
    # The step varint at data + 10: read byte columns until every varint has ended (steps < 2^28 take
    # at most 4 bytes), accumulating the value as we go.
    step = np.zeros(len(data), np.uint64)
    k = np.zeros(len(data), np.int64)  # varint length; 0 while still running
    for i in range(10):
        byte = arr[data + 10 + i]
        running = k == 0
        step |= np.where(running, (byte & 0x7F).astype(np.uint64) << np.uint64(7 * i), np.uint64(0))
        k[running & (byte < 0x80)] = i + 1
        if k.all():
            break
    ok &= k > 0
    p = data + 10 + k
    l1, l2, l3 = arr[p + 1].astype(np.int64), arr[p + 3].astype(np.int64), arr[p + 5].astype(np.int64)
    q = p + 6 + l3
    ok &= ((arr[p] == 0x2A) & (arr[p + 2] == 0x0A) & (arr[p + 4] == 0x0A) & (l1 < 128) & (l2 == l3 + 7)
           & (l1 == l2 + 2) & (arr[q] == 0x15) & (q + 5 == data + lens))
    rows = np.flatnonzero(ok)
    slow = np.flatnonzero(~ok)
    if not len(rows):
        return None, slow
    step, p, l3, q = step[rows], p[rows], l3[rows], q[rows]
    walls = _gather(arr, data[rows] + 1, 8).view("<f8").ravel()
    values = _gather(arr, q + 1, 4).view("<f4").ravel()
    names, tag_of = _unique_tags(arr, p + 6, l3)
    if None in names:  # bytes that are not UTF-8: protobuf rejects them, with a proper error
        return None, np.arange(len(lens))
    return (names, tag_of, step.view(np.int64), values.astype(np.float64), walls, rows), slow


def _unique_tags(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[list, np.ndarray]:
    """The distinct tag strings (None where not UTF-8) and each record's index into them (hashed, then
    verified byte for byte: exact)."""
    width = max(8, int(-(-lengths.max() // 8) * 8))
    rows = np.lib.stride_tricks.sliding_window_view(arr, width)[starts]
    rows[np.arange(width)[None, :] >= lengths[:, None]] = 0
    h = lengths.astype(np.uint64)
    for word in rows.view("<u8").T:
        h = (h ^ word) * np.uint64(0x100000001B3)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    if not np.array_equal(rows[first][inverse], rows):  # a hash collision: sort the bytes themselves
        _, first, inverse = np.unique(rows.view(f"V{width}").ravel(), return_index=True,
                                      return_inverse=True)
    return [_utf8(bytes(rows[i, :lengths[i]])) for i in first], inverse.ravel()


def _utf8(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


_FLOAT_DTYPES = {1: "<f4", 2: "<f8", 19: "<f2", 14: "bfloat16"}  # DT_FLOAT, DT_DOUBLE, DT_HALF, DT_BFLOAT16


def _tensor_scalar(t) -> float | None:
    """The value of a one-element float TensorProto (newer writers' scalars), else None."""
    kind = _FLOAT_DTYPES.get(t.dtype)
    if kind is None or int(np.prod([d.size for d in t.tensor_shape.dim])) != 1:
        return None
    if t.tensor_content:
        if kind == "bfloat16":
            return float((np.frombuffer(t.tensor_content, "<u2").astype(np.uint32) << 16).view("<f4")[0])
        return float(np.frombuffer(t.tensor_content, kind)[0])
    if kind == "<f4" and t.float_val:
        return float(t.float_val[0])
    if kind == "<f8" and t.double_val:
        return float(t.double_val[0])
    if t.half_val:
        bits = np.array([t.half_val[0]], np.uint32)
        if kind == "bfloat16":
            return float((bits << 16).view("<f4")[0])
        return float(bits.astype(np.uint16).view("<f2")[0])
    return 0.0 if kind in ("<f4", "<f8") and not (t.float_val or t.double_val) else None


def _decode_proto(path, buf, offs, lens, records, tag_index):
    """Full protobuf decoding of the records the fast path did not take."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    cols: list[list] = [[], [], [], [], []]
    purges: list[tuple[int, int]] = []
    view = memoryview(buf)
    for r in records.tolist():
        start = int(offs[r]) + 12
        try:
            ev = Event.FromString(view[start:start + int(lens[r])])
        except DecodeError as e:
            raise EventFileError(path, int(offs[r]), f"undecodable event ({e})") from None
        if ev.HasField("session_log") and ev.session_log.status == SessionLog.START:
            purges.append((r, ev.step))
        if not ev.HasField("summary"):
            continue
        for v in ev.summary.value:
            kind = v.WhichOneof("value")
            if kind == "simple_value":
                value = v.simple_value
            elif kind == "tensor" and v.metadata.plugin_data.plugin_name in ("", "scalars"):
                value = _tensor_scalar(v.tensor)
                if value is None:
                    continue
            else:
                continue
            for col, x in zip(cols, (tag_index.setdefault(v.tag, len(tag_index)), ev.step, value,
                                     ev.wall_time, r)):
                col.append(x)
    dtypes = (np.int32, np.int64, np.float64, np.float64, np.int64)
    return tuple(np.array(c, d) for c, d in zip(cols, dtypes)), purges


# --- a run: several files -----------------------------------------------------------------------------------
def event_files(directory: Path) -> list[Path]:
    """The event files directly in ``directory`` (not below it)."""
    return sorted(p for p in Path(directory).glob("events.out.tfevents.*") if p.is_file())


def _name_time(path: Path) -> int:
    m = _FILE_RE.match(path.name)
    return int(m.group(1)) if m else 0


def read_scalars(paths: Iterable[Path | str], tags: Iterable[str] | None = None) -> dict[str, Series]:
    """Every scalar series (or only ``tags``) of one run's event files, merged (see the module doc)."""
    wanted = set(tags) if tags is not None else None
    files = [(Path(p), _read_file(Path(p), wanted)) for p in paths]
    # Newest last: by the first event's wall time (sub-second), then the second in the name, then name.
    files.sort(key=lambda f: (np.nan_to_num(f[1].first_wall_time, nan=_name_time(f[0])),
                              _name_time(f[0]), f[0].name))
    # A partial last record is what a run killed mid-write leaves. Once the run has been resumed (a
    # later file starts with a purge: the resumed run rewrote everything after its checkpoint) the
    # file is read up to that record; anywhere else it is an error, never silently dropped.
    for i, (_, fe) in enumerate(files):
        if fe.truncated is not None and not any(later.purges for _, later in files[i + 1:]):
            raise fe.truncated
    names: dict[str, int] = {}
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    purges: list[tuple[int, int]] = []
    base = 0  # write order across files: record index offset by the records of the older files
    for _, fe in files:
        remap = np.array([names.setdefault(n, len(names)) for n in fe.tag_names], np.int32)
        for col, x in zip(cols, (remap[fe.tag_ids] if len(remap) else fe.tag_ids, fe.steps, fe.values,
                                 fe.wall_times, fe.order + base)):
            col.append(x)
        purges += [(base + r, s) for r, s in fe.purges]
        base += fe.n_records
    if not names:
        return {}
    ids, steps, values, walls, order = (np.concatenate(c) for c in cols)
    if purges:
        keep = np.ones(len(ids), bool)
        for at, step in purges:
            keep &= ~((order < at) & (steps >= step))
        ids, steps, values, walls, order = ids[keep], steps[keep], values[keep], walls[keep], order[keep]
    # Group by tag (stable: keeps write order inside a tag), then sort by step where needed.
    by_tag = np.argsort(order, kind="stable")
    by_tag = by_tag[np.argsort(ids[by_tag], kind="stable")]
    ids, steps, values, walls = ids[by_tag], steps[by_tag], values[by_tag], walls[by_tag]
    bounds = np.flatnonzero(np.diff(ids)) + 1
    out: dict[str, Series] = {}
    tag_names = list(names)
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
        if hi <= lo:
            continue
        s, v, w = steps[lo:hi], values[lo:hi], walls[lo:hi]
        if not np.all(s[1:] > s[:-1]):
            idx = np.argsort(s, kind="stable")  # stable: among equal steps, the later write is last
            s, v, w = s[idx], v[idx], w[idx]
            last = np.r_[s[1:] != s[:-1], True]  # keep the last write of each step
            s, v, w = s[last], v[last], w[last]
        out[tag_names[ids[lo]]] = Series(s, v, w)
    return dict(sorted(out.items()))
