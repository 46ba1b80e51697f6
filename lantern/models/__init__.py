"""The LANTERN transformer: attention and its KV cache, positions, blocks, the recursive stack."""

from lantern.models.kv_cache import KVCache
from lantern.models.lantern_model import LANTERNModel, RecursiveTransformer

__all__ = ["KVCache", "LANTERNModel", "RecursiveTransformer"]
