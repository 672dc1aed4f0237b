"""What a test holds of a notebook's objects: `Ref`, a proxy on an object living in the kernel,
and the kernel side (KERNEL_SOURCE, installed as module `_nbtest_handle` in the kernel).

A request is one JSON text evaluated as a user expression (a silent execute request: no
history, no execution count, no IPython events); its answer comes back in the reply. Values of
plain JSON types (None, bool, int, float, str, and lists, tuples, dicts with str keys of these,
exactly those types) come back as Python objects; anything else stays in the kernel and the
test gets a Ref to it. Arguments go the other way: plain values, Refs, else pickled. The
kernel side is nbtest/handle_kernel.py.
"""

from __future__ import annotations

import base64
import pickle
import weakref
from dataclasses import dataclass, field
from typing import Any


def encode_argument(value: Any) -> Any:
    """A test-side value as the kernel's `decode` reads it: plain JSON, a Ref, else pickled."""
    kind = type(value)
    if isinstance(value, Ref):
        return {"r": value._key}
    if kind in (type(None), bool, int, float, str):
        return value
    if kind is list:
        return [encode_argument(v) for v in value]
    if kind is tuple:
        return {"t": [encode_argument(v) for v in value]}
    if kind is dict and all(type(k) is str for k in value):
        return {"d": {k: encode_argument(v) for k, v in value.items()}}
    try:
        return {"p": base64.b64encode(pickle.dumps(value)).decode()}
    except Exception as exc:
        raise TypeError(f"cannot send {value!r} to the kernel: it is neither plain JSON, a "
                        f"Ref, nor picklable ({exc}); inject code that builds it there") from None


def decode_value(data: Any) -> Any:
    """A plain value as the kernel's `encode` wrote it."""
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    if isinstance(data, dict):
        if "t" in data:
            return tuple(decode_value(v) for v in data["t"])
        return {k: decode_value(v) for k, v in data["d"].items()}
    return data


class Ref:
    """A proxy on an object in a notebook's kernel: attribute access, calls, items, len,
    iteration, `==` and `in` run there; plain JSON results come back as Python objects."""

    __hash__ = None  # type: ignore[assignment]  # == is asked of the kernel

    def __init__(self, handle: Any, key: int, name: str, type_name: str, shown: str,
                 methods: Any = ()) -> None:
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_shown", shown)
        # Names under which the object has a plain method (the kernel side's `methods`).
        object.__setattr__(self, "_methods", frozenset(methods))
        # Once this Ref is gone, the kernel side may let go of the object: its key goes with
        # the handle's next request (never from here: a finalizer runs at any moment).
        weakref.finalize(self, handle.released.append, key).atexit = False

    def _ask(self, op: str, shown: str = "", **fields: Any) -> Any:
        return self._handle._ask({"op": op, "obj": self._key, **fields}, shown or self._name)

    def __repr__(self) -> str:
        return (f"<nbtest.Ref {self._name}: {self._type} in the kernel of "
                f"{self._handle.path}: {self._shown}>")

    def __str__(self) -> str:
        return str(self._ask("str"))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy, pickle and the like probe these: not the kernel
        if name in self._methods:
            return MethodRef(self, name)
        return self._ask("attr", f"{self._name}.{name}", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._name}: set attributes with nb.inject(...), not on a Ref")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", f"{self._name}(...)", args=encode_argument(list(args)),
                         kwargs=encode_argument(dict(kwargs)))

    def __getitem__(self, key: Any) -> Any:
        return self._ask("item", f"{self._name}[{key!r}]", key=encode_argument(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ask("setitem", key=encode_argument(key), value=encode_argument(value))

    def __len__(self) -> int:
        return int(self._ask("len"))

    def __contains__(self, item: Any) -> bool:
        return bool(self._ask("contains", item=encode_argument(item)))

    def __eq__(self, other: object) -> Any:
        return self._ask("eq", other=encode_argument(other))

    def __ne__(self, other: object) -> Any:
        return not self.__eq__(other)

    def __iter__(self) -> Any:
        iterator = self._ask("iter", f"iter({self._name})")
        while True:
            item = self._handle._ask({"op": "next", "obj": iterator._key}, self._name)
            if item is StopIteration:
                return
            yield item

    @property
    def calls(self) -> Any:
        """A mock's calls as `[[args, kwargs], ...]` (plain values where they are plain)."""
        return self._ask("calls", f"{self._name}.call_args_list")

    def fetch(self) -> Any:
        """The object itself, pickled in the kernel and unpickled here."""
        payload = self._ask("fetch")
        return pickle.loads(base64.b64decode(payload))


class MethodRef:
    """A method of a Ref's object, looked up in the kernel when it is called, so a call is one
    request; any other use asks the kernel for the bound method and works as its Ref."""

    def __init__(self, owner: Ref, name: str) -> None:
        self._owner, self._attr, self._bound = owner, name, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        owner = self._owner
        return owner._ask("callattr", f"{owner._name}.{self._attr}(...)", name=self._attr,
                          args=encode_argument(list(args)), kwargs=encode_argument(dict(kwargs)))

    def _ref(self) -> Any:
        if self._bound is None:
            owner = self._owner
            self._bound = owner._ask("attr", f"{owner._name}.{self._attr}", name=self._attr)
        return self._bound

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._ref(), name)

    def __repr__(self) -> str:
        owner = self._owner
        return (f"<nbtest.Ref {owner._name}.{self._attr}: a method of {owner._type} in the "
                f"kernel of {owner._handle.path}>")

    def __str__(self) -> str:
        return str(self._ref())

    def __eq__(self, other: object) -> Any:
        return self._ref() == other

    __hash__ = None  # type: ignore[assignment]  # == is asked of the kernel


@dataclass
class CellOutput:
    """What a cell (or injected code) displayed: `text` as testbook's cell_output_text
    reads it, `data` (mime type -> value of its rich outputs, the last one winning)."""

    number: int | None  # the cell's number in the notebook (None: injected code)
    outputs: list[Any] = field(default_factory=list)  # nbformat output dicts

    @property
    def text(self) -> str:
        """Stream text and each result's text/plain, joined and stripped."""
        parts = []
        for out in self.outputs:
            if "text" in out:
                parts.append(out["text"])
            elif "text/plain" in out.get("data", {}):
                parts.append(out["data"]["text/plain"])
        return "".join(parts).strip()

    @property
    def data(self) -> dict[str, Any]:
        """The rich outputs' data by mime type (execute_result and display_data)."""
        found: dict[str, Any] = {}
        for out in self.outputs:
            found.update(out.get("data", {}))
        return found

    @property
    def result(self) -> dict[str, Any]:
        """The execute_result's data (the cell's last expression), {} without one."""
        return next((dict(o["data"]) for o in self.outputs
                     if o.get("output_type") == "execute_result"), {})
