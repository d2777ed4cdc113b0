"""Loading tensors onto a CUDA device.

Copying straight from a file map to the GPU is slow: the driver stages
pageable memory itself, one tensor at a time, and waits for each copy.
Instead, bytes go from the file map into a ring of pinned host buffers and
from there to the device with asynchronous copies on a side stream, so
filling one buffer overlaps the transfer out of the other.

All tensors of a load live in one device allocation (the "arena"); each is a
view of it at a 256-byte aligned offset, which saves one allocator call per
tensor. Tensors that follow each other in the file are placed so that they
also follow each other in the arena whenever that keeps them aligned, so the
usual file (every tensor a multiple of 256 bytes) moves as a few large
copies rather than one per tensor. The arena is freed when the last tensor
viewing it is.

Each chunk is read into memory and mapped with one system call before it is
copied, and the kernel is asked to read a few chunks ahead, so that neither a
cold page cache nor page faults stall the copies (see `_PageCache`).
"""

from __future__ import annotations

from typing import Any, List, Tuple

from ._frameworks import byte_array, empty_tensor

# Staging: two pinned buffers of 64 MiB each, reused through torch's caching
# host allocator. On an H100 this was the fastest of 8 to 128 MiB times 2 to
# 4 buffers (2 GiB in 200 tensors: 52 ms, against 56 to 67 ms).
_CHUNK = 64 << 20
_SLOTS = 2
# Chunks the kernel is asked to read ahead of the one being copied.
_PREFETCH = 4
_ALIGN = 256
# A single tensor at least this large goes through the staging buffers too;
# below it, a plain copy costs less than setting up the ring.
PINNED_MIN = 8 << 20


class _Segment:
    """Bytes `[start, end)` of a source storage that go to `arena_start` onwards."""

    __slots__ = ("start", "end", "arena_start")

    def __init__(self, start: int, end: int, arena_start: int) -> None:
        self.start, self.end, self.arena_start = start, end, arena_start


class _ArenaPlan:
    """Where each tensor goes in the arena, and which bytes to copy there."""

    def __init__(self) -> None:
        self.placements: List[int] = []
        # (storage, segments in ascending order): a new source starts where
        # the storage changes or the offsets go back.
        self.sources: List[Tuple[Any, List[_Segment]]] = []
        self.total = 0

    def add(self, storage: Any, offset: int, nbytes: int) -> None:
        if nbytes == 0:
            self.placements.append(0)
            return
        last = self.sources[-1] if self.sources else None
        if last is not None and last[0] is storage and last[1][-1].end == offset:
            segment = last[1][-1]
            follows = segment.arena_start + (offset - segment.start)
            if follows == self.total and follows % _ALIGN == 0:
                segment.end = offset + nbytes
                self.placements.append(follows)
                self.total += nbytes
                return
        start = -(-self.total // _ALIGN) * _ALIGN
        if last is None or last[0] is not storage or offset < last[1][-1].end:
            # Segments of one source must ascend: the copy walks it once.
            self.sources.append((storage, []))
        self.sources[-1][1].append(_Segment(offset, offset + nbytes, start))
        self.placements.append(start)
        self.total = start + nbytes


def load_to_cuda(device: Any, resolve: Any, records: List[Any]) -> List[Any]:
    """Loads every `RawTensor` record onto `device` and returns the tensors
    in the same order, once every copy is done. `resolve(record)` gives a
    record's torch dtype and shape, or raises for one torch cannot hold
    (before any byte moves)."""
    import torch

    plan = _ArenaPlan()
    targets = []
    for record in records:
        targets.append(resolve(record))
        plan.add(record.storage, record.offset, record.nbytes)
    arena = torch.empty(max(plan.total, 1), dtype=torch.uint8, device=device)
    _copy_sources(torch, plan.sources, arena)
    result = []
    for record, (torch_dtype, shape), start in zip(records, targets, plan.placements):
        if record.nbytes == 0:
            result.append(empty_tensor(torch, shape, torch_dtype, device))
        else:
            result.append(arena[start : start + record.nbytes].view(torch_dtype).reshape(shape))
    return result


def _copy_sources(torch: Any, sources: List[Tuple[Any, List[_Segment]]], arena: Any) -> None:
    """Copies every segment into `arena` through pinned staging buffers."""
    if not sources:
        return
    device = arena.device
    stream = torch.cuda.Stream(device=device)
    # The arena may reuse memory that kernels on the current stream still use.
    stream.wait_stream(torch.cuda.current_stream(device))
    largest = max(segments[-1].end - segments[0].start for _, segments in sources)
    chunk = min(_CHUNK, largest)
    staging = [torch.empty(chunk, dtype=torch.uint8, pin_memory=True) for _ in range(_SLOTS)]
    ring = _Ring(torch, staging, stream)
    mover = _Mover(torch, arena, chunk)
    with torch.cuda.stream(stream):
        for storage, segments in sources:
            begin, end = segments[0].start, segments[-1].end
            source = torch.frombuffer(byte_array(storage, begin, end - begin), dtype=torch.uint8)
            pages = _PageCache(storage, end)
            pages.read_ahead(begin, _PREFETCH * _CHUNK)
            pending = iter(segments)
            segment = next(pending, None)
            for position in range(begin, end, _CHUNK):
                size = min(_CHUNK, end - position)
                pages.read_ahead(position + _PREFETCH * _CHUNK, _CHUNK)
                pages.read_now(position, size)
                slot = ring.next_slot()
                slot[:size].copy_(source[position - begin : position - begin + size])
                # Every segment piece inside [position, position + size).
                pieces = []
                while segment is not None and segment.start < position + size:
                    low, high = max(segment.start, position), min(segment.end, position + size)
                    pieces.append((segment.arena_start + (low - segment.start), low - position, high - low))
                    if segment.end > position + size:
                        break
                    segment = next(pending, None)
                mover.move(slot, size, pieces)
                ring.release()
    stream.synchronize()


class _PageCache:
    """Hints to the kernel about the memory of a `_Storage` (no-ops for
    anything but a file map): `read_ahead` starts reading bytes in the
    background, so on a cold page cache the disk works ahead of the copies;
    `read_now` reads and maps the bytes about to be copied in one call,
    instead of one page fault per 4 KiB page in the threads that copy them."""

    def __init__(self, storage: Any, end: int) -> None:
        self._storage = storage if hasattr(storage, "prefetch") else None
        self._end = end

    def read_ahead(self, offset: int, length: int) -> None:
        if self._storage is not None and offset < self._end:
            self._storage.prefetch(offset, min(length, self._end - offset))

    def read_now(self, offset: int, length: int) -> None:
        if self._storage is not None and offset < self._end:
            self._storage.populate(offset, min(length, self._end - offset))


class _Mover:
    """Moves the pieces of one staged chunk to their places in the arena.

    A chunk of a few large pieces (the usual file) goes straight to the
    arena, one copy per piece. A chunk of many pieces (tensors whose sizes
    break the arena's alignment, so each needs its own place) crosses to
    the device in one copy and is spread out there with one batched
    device-to-device copy: issuing a host-to-device copy per small tensor
    costs more than the transfer itself.
    """

    DIRECT_PIECES = 4

    def __init__(self, torch: Any, arena: Any, chunk: int) -> None:
        self._torch, self._arena, self._chunk = torch, arena, chunk
        self._landing: Any = None

    def move(self, slot: Any, size: int, pieces: List[Tuple[int, int, int]]) -> None:
        arena = self._arena
        if len(pieces) <= self.DIRECT_PIECES:
            for arena_low, at, length in pieces:
                arena[arena_low : arena_low + length].copy_(slot[at : at + length], non_blocking=True)
            return
        if self._landing is None:
            # One is enough: the side stream orders each landing after the
            # spreading of the previous one.
            self._landing = self._torch.empty(self._chunk, dtype=self._torch.uint8, device=arena.device)
        landing = self._landing
        landing[:size].copy_(slot[:size], non_blocking=True)
        targets = [arena[arena_low : arena_low + length] for arena_low, _, length in pieces]
        sources = [landing[at : at + length] for _, at, length in pieces]
        self._torch._foreach_copy_(targets, sources)


class _Ring:
    """Pinned staging buffers used in turn; a buffer is handed out again
    only once the copies out of it have finished."""

    def __init__(self, torch: Any, buffers: List[Any], stream: Any) -> None:
        self._torch, self._buffers, self._stream = torch, buffers, stream
        self._done: List[Any] = [None] * len(buffers)
        self._turn = 0

    def next_slot(self) -> Any:
        slot = self._turn % len(self._buffers)
        if self._done[slot] is not None:
            self._done[slot].synchronize()
        return self._buffers[slot]

    def release(self) -> None:
        slot = self._turn % len(self._buffers)
        event = self._torch.cuda.Event()
        event.record(self._stream)
        self._done[slot] = event
        self._turn += 1
