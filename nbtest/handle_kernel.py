"""The kernel side of nbtest's notebook handle (nbtest/handle.py), as source: KERNEL_SOURCE is
installed as module `_nbtest_handle` in the kernel; a request is one JSON text evaluated as a
user expression of a silent execute request (no history, no execution count, no IPython
events), its answer a JSON text in the reply (see nbtest/refs.py for the value rules).
Errors come back with the frames' notebook cells: each cell's source is known by digest.
"""

from __future__ import annotations

import json
from typing import Any

HELPER = "_nbtest_handle"  # the kernel-side module's name in the kernel's sys.modules

KERNEL_SOURCE = r'''
import base64, hashlib, json, linecache, pickle, sys, traceback, types, weakref
from IPython import get_ipython

HERE = "<nbtest-handle>"
objects, patchers, cells, counter = {}, {}, {}, [0]
method_names = weakref.WeakKeyDictionary()  # type -> its plain methods' names (see methods)


def digest(text):
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def setup(numbered):
    ip = get_ipython()
    for number, source in numbered:
        cells.setdefault(digest(ip.transform_cell(source)), number)
        cells.setdefault(digest(source), number)


def plain(value, depth=0):
    kind = type(value)
    if kind in (type(None), bool, int, float, str):
        return True
    if depth > 100:
        return False
    if kind in (list, tuple):
        return all(plain(v, depth + 1) for v in value)
    if kind is dict:
        return all(type(k) is str and plain(v, depth + 1) for k, v in value.items())
    return False


def encode(value):
    kind = type(value)
    if kind is list:
        return [encode(v) for v in value]
    if kind is tuple:
        return {"t": [encode(v) for v in value]}
    if kind is dict:
        return {"d": {k: encode(v) for k, v in value.items()}}
    return value


def out(value):
    if plain(value):
        return {"v": encode(value)}
    counter[0] += 1
    objects[counter[0]] = value
    try:
        shown = repr(value)
    except Exception as exc:
        shown = "<repr failed: %r>" % (exc,)
    kind = type(value)
    return {"r": counter[0], "repr": shown[:400], "type": kind.__module__ + "." + kind.__qualname__,
            "m": methods(value)}


def methods(value):
    # The public names under which getattr(value, name) finds a function defined in its class
    # (or a base), by the rules of object.__getattribute__ and without running any code: the
    # test side calls those in one request, looking them up then ("callattr").
    kind = type(value)
    try:
        names = method_names.get(kind)
    except TypeError:
        return []
    if names is None:
        names, seen = [], set()
        if kind.__getattribute__ is object.__getattribute__:
            for klass in kind.__mro__:
                for name, attr in vars(klass).items():
                    if name not in seen and not name.startswith("_") \
                            and type(attr) is types.FunctionType:
                        names.append(name)
                    seen.add(name)
        names = names if len(names) <= 64 else []
        method_names[kind] = names
    if not names:
        return names
    try:  # an instance attribute of the same name wins over the class's function
        own = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        own = {}
    return [name for name in names if name not in own] if type(own) is dict else []


def decode(data):
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if "t" in data:
            return tuple(decode(v) for v in data["t"])
        if "d" in data:
            return {k: decode(v) for k, v in data["d"].items()}
        if "r" in data:
            return objects[data["r"]]
        if "p" in data:
            return pickle.loads(base64.b64decode(data["p"]))
    return data


def frames(tb):
    found = []
    for frame, line in traceback.walk_tb(tb):
        name = frame.f_code.co_filename
        if name == HERE:
            continue
        cell = cells.get(digest("".join(linecache.getlines(name))))
        found.append([cell, line, name, frame.f_code.co_name])
    return found


def failure(exc, tb):
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    listed = frames(tb)
    entries = [e for e in traceback.extract_tb(tb) if e.filename != HERE]
    for entry, (cell, _, _, _) in zip(entries, listed):
        if cell is not None:
            entry.filename = "cell %d" % cell
    text = "".join(traceback.format_list(entries) + traceback.format_exception_only(type(exc), exc))
    return {"ename": type(exc).__name__, "evalue": str(exc), "frames": listed, "text": text}


def act(req):
    op = req["op"]
    ns = get_ipython().user_ns
    if op == "eval":
        return out(eval(req["expr"], ns))
    if op == "last":
        return {"v": frames(sys.last_traceback) if sys.last_traceback is not None else []}
    if op == "unpatch":
        patchers.pop(req["key"]).stop()
        return {"v": None}
    if op == "patch":
        from unittest import mock
        maker = mock.patch.dict if req.get("dict") else mock.patch
        patcher = maker(*decode(req["args"]), **decode(req["kwargs"]))
        found = out(patcher.start())
        counter[0] += 1
        patchers[counter[0]] = patcher
        found["key"] = counter[0]
        return found
    obj = objects[req["obj"]]
    if op == "attr":
        return out(getattr(obj, req["name"]))
    if op == "call":
        return out(obj(*decode(req["args"]), **decode(req["kwargs"])))
    if op == "callattr":
        return out(getattr(obj, req["name"])(*decode(req["args"]), **decode(req["kwargs"])))
    if op == "item":
        return out(obj[decode(req["key"])])
    if op == "setitem":
        obj[decode(req["key"])] = decode(req["value"])
        return {"v": None}
    if op == "len":
        return {"v": len(obj)}
    if op in ("repr", "str"):
        return {"v": (repr if op == "repr" else str)(obj)}
    if op == "eq":
        return out(obj == decode(req["other"]))
    if op == "contains":
        return {"v": decode(req["item"]) in obj}
    if op == "iter":
        return out(iter(obj))
    if op == "next":
        try:
            return out(next(obj))
        except StopIteration:
            return {"stop": True}
    if op == "calls":
        return out([[list(c.args), dict(c.kwargs)] for c in obj.call_args_list])
    if op == "fetch":
        return {"p": base64.b64encode(pickle.dumps(obj)).decode()}
    if op == "release":
        objects.pop(req["obj"], None)
        return {"v": None}
    raise ValueError("nbtest handle: unknown request %r" % op)


class Reply:
    def __init__(self, payload):
        self.payload = payload

    def _repr_json_(self):
        return self.payload


def request(text):
    try:
        req = json.loads(text)
        for key in req.get("drop", ()):  # the test side holds no Ref to these any more
            objects.pop(key, None)
        return Reply({"json": json.dumps(act(req))})
    except Exception as exc:
        return Reply({"json": json.dumps({"error": failure(exc, exc.__traceback__)})})
'''

# Run once in a fresh kernel (exec'd with SOURCE and CELLS): the helper becomes a module,
# leaving the user's namespace as the notebook left it.
BOOT = ("import sys, types\n"
        f"m = types.ModuleType({HELPER!r})\n"
        "exec(compile(SOURCE, '<nbtest-handle>', 'exec'), m.__dict__)\n"
        f"sys.modules[{HELPER!r}] = m\n"
        "m.setup(CELLS)\n")


def install_code(cells: list[list[Any]]) -> str:
    """The code that installs the kernel side, given `[[number, source], ...]` of the cells."""
    names = f"{{'SOURCE': {KERNEL_SOURCE!r}, 'CELLS': {cells!r}}}"
    return f"__import__('builtins').exec({BOOT!r}, {names})"


def request_expression(req: dict[str, Any]) -> str:
    """The user expression that runs `req` in the kernel."""
    return f"__import__({HELPER!r}).request({json.dumps(req)!r})"
