"""The HF backend's KV cache: transformers' DynamicCache with its full-attention layers appending in place.

A DynamicLayer appends by concatenation: every decode step allocates a new key and value tensor per layer and
copies the whole cache into it. On CPU those allocations are fresh pages (page faults, zeroing), and they cost
more than the small model's arithmetic (docs/rollout.md, "Where a rollout's time goes"). PreallocatedLayer keeps
keys and values in buffers with room to grow and writes new positions in place; the model reads the same numbers
in the same order, so logits do not change.
"""

from __future__ import annotations

import torch

GROWTH = 1.5  # a full buffer is reallocated this many times larger than needed (amortised O(1) appends)
MIN_ROOM = 64  # positions of headroom at least, so that a decode step rarely reallocates


try:
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # transformers < 4.56: no layered caches; the model builds its own cache
    DynamicCache = DynamicLayer = None


if DynamicLayer is not None:
    class PreallocatedLayer(DynamicLayer):
        """A DynamicLayer whose `keys` / `values` are views of the first `length` positions of larger buffers.
        Assigning `keys` / `values` (batch selection, cropping, the backend's parking and compaction) replaces
        the buffers; `update` writes in place and grows a full buffer by GROWTH."""

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            self.is_initialized = True

        @property
        def keys(self) -> torch.Tensor | None:
            buffer = self.__dict__.get("_keys")
            return None if buffer is None else buffer[:, :, :self.length]

        @keys.setter
        def keys(self, tensor: torch.Tensor | None) -> None:
            self._keys, self.length = tensor, 0 if tensor is None else tensor.shape[-2]

        @property
        def values(self) -> torch.Tensor | None:
            buffer = self.__dict__.get("_values")
            return None if buffer is None else buffer[:, :, :self.length]

        @values.setter
        def values(self, tensor: torch.Tensor | None) -> None:
            self._values = tensor

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start, end = self.length, self.length + key_states.shape[-2]
            if self._keys is None or end > self._keys.shape[-2]:
                room = max(int(end * GROWTH), end + MIN_ROOM)
                self._keys = self._grown(self._keys, key_states, room)
                self._values = self._grown(self._values, value_states, room)
            self._keys[:, :, start:end] = key_states
            self._values[:, :, start:end] = value_states
            self.length = end
            return self.keys, self.values

        def _grown(self, buffer: torch.Tensor | None, new: torch.Tensor, room: int) -> torch.Tensor:
            grown = new.new_empty((*new.shape[:2], room, new.shape[-1]))
            if buffer is not None and self.length:
                grown[:, :, :self.length] = buffer[:, :, :self.length]
            return grown
else:
    PreallocatedLayer = None


def new_cache(model):
    """The cache the backend starts a batch with: the model's DynamicCache, its plain full-attention layers
    replaced by PreallocatedLayers (sliding-window and other layers stay as transformers makes them). None where
    this transformers has no layered caches: the model then builds its own."""
    if DynamicCache is None:
        return None
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:
        return None
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    cache.layers = [PreallocatedLayer() if type(layer) is DynamicLayer else layer for layer in layers]
    return cache


def kv_tensors(cache) -> list[torch.Tensor] | None:
    """The cache's key and value tensors [B, H, L, D], layer by layer, or None for a layout the backend does not
    reshape (sliding-window, quantized or static layers: those rows are then simply left in the batch)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        plain = (DynamicLayer, PreallocatedLayer)
        if not all(type(layer) in plain and getattr(layer, "is_initialized", False) for layer in layers):
            return None
        return [t for layer in layers for t in (layer.keys, layer.values)]
    if type(cache).__name__ == "DynamicCache" and hasattr(cache, "key_cache"):  # transformers < 4.56
        return [t for pair in zip(cache.key_cache, cache.value_cache) for t in pair]
    return None


def set_kv_tensors(cache, tensors: list[torch.Tensor]) -> None:
    keys, values = tensors[0::2], tensors[1::2]
    if getattr(cache, "layers", None) is not None:
        for layer, k, v in zip(cache.layers, keys, values):
            layer.keys, layer.values = k, v
    else:
        cache.key_cache, cache.value_cache = list(keys), list(values)
