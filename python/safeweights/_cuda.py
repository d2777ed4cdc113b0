"""Loading a whole file onto a CUDA device.

Bytes go from the file map into a ring of two pinned host buffers and from
there to the device with asynchronous copies on a side stream, so reading
the next chunk overlaps the transfer of the previous one. All tensors of a
file live in one device allocation (each tensor is a view of it at a
256-byte aligned offset), which avoids one allocator call per tensor.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

_CHUNK = 64 << 20
_ALIGN = 256


def load_to_cuda(converter: Any, entries: List[Tuple[str, Tuple[Any, ...]]]) -> Dict[str, Any]:
    """Loads every entry `(name, (buffer, offset, nbytes, dtype, shape, writable))`."""
    import torch

    device = converter.device
    placements = []
    total = 0
    for _, args in entries:
        if args[3] not in converter._dtypes:
            converter.cpu_tensor(*args)  # raises the unsupported-dtype error
        total = -(-total // _ALIGN) * _ALIGN
        placements.append(total)
        total += args[2]
    arena = torch.empty(max(total, 1), dtype=torch.uint8, device=device)
    stream = torch.cuda.Stream(device=device)
    # The arena may reuse memory that kernels on the current stream still use.
    stream.wait_stream(torch.cuda.current_stream(device))
    staging = [torch.empty(min(_CHUNK, max(total, 1)), dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    done = [None, None]
    copies = 0
    with torch.cuda.stream(stream):
        for (_, (buffer, offset, nbytes, _dtype, _shape, _writable)), start in zip(entries, placements):
            if nbytes == 0:
                continue
            source = torch.frombuffer(buffer, dtype=torch.uint8, count=nbytes, offset=offset)
            for position in range(0, nbytes, _CHUNK):
                size = min(_CHUNK, nbytes - position)
                slot = copies % 2
                if done[slot] is not None:
                    done[slot].synchronize()  # the previous copy out of this buffer finished
                staging[slot][:size].copy_(source[position : position + size])
                arena[start + position : start + position + size].copy_(staging[slot][:size], non_blocking=True)
                event = torch.cuda.Event()
                event.record(stream)
                done[slot] = event
                copies += 1
    stream.synchronize()
    torch_dtypes = converter._dtypes
    result = {}
    for (name, (_buffer, _offset, nbytes, dtype, shape, _writable)), start in zip(entries, placements):
        torch_dtype = torch_dtypes[dtype]
        if dtype == "F4":
            from ._convert import _packed_f4_shape

            shape = _packed_f4_shape(shape)
        if nbytes == 0:
            result[name] = torch.empty(shape, dtype=torch_dtype, device=device)
        else:
            result[name] = arena[start : start + nbytes].view(torch_dtype).reshape(shape)
    return result
