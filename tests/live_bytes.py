"""The peak of live tensor bytes over a block of code, counted the way an allocator would see them: every storage an
op creates (forward, autograd's backward, the optimizer, bitsandbytes' kernels) is live from its creation until it
is freed; views share their base's storage and count once. Tensors that exist before the block (weights, buffers,
quantisation state) are counted from the start.

    with PeakLiveBytes(model.parameters(), model.buffers()) as probe:
        loss = model(**batch).loss; loss.backward(); opt.step()
    probe.peak   # bytes

A TorchDispatchMode sees every op's outputs, in the autograd engine's backward too; a weak reference to each storage
says when it is freed (torch keeps one Python object per live storage).
"""
from __future__ import annotations

import weakref
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only


class PeakLiveBytes(TorchDispatchMode):
    def __init__(self, *existing: Iterable[torch.Tensor]):
        super().__init__()
        self._refs: dict[int, weakref.ref] = {}
        self.now = self.peak = 0
        for group in existing:
            for t in group:
                self.track(t)
        self.start = self.now

    def track(self, t) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        try:
            st = t.untyped_storage()
        except (NotImplementedError, RuntimeError):  # tensor subclasses without a storage of their own
            return
        key = id(st)
        ref = self._refs.get(key)
        if ref is not None and ref() is st:
            return
        n = st.nbytes()

        def freed(_, key=key, n=n):
            self.now -= n
            self._refs.pop(key, None)

        self._refs[key] = weakref.ref(st, freed)
        self.now += n
        self.peak = max(self.peak, self.now)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, self.track, out)
        return out
