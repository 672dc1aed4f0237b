"""The wire between a notebook handle (handle.py) and its kernel side (handle_kernel.py): one
request is one silent execute request whose user expression carries the answer; errors come
back as KernelCodeError with the notebook's cell and line, a call past its limit is interrupted
(CallTimeout), and a kernel that dies is said to have died."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .errors import CallTimeout, KernelCodeError
from .handle_kernel import request_expression
from .refs import Ref, decode_value

INTERRUPT_WAIT = 2.0  # seconds an interrupted call gets to answer before its kernel is killed
# Requests whose IOPub messages may wait unread (2 or 3 each; zmq keeps 1000 before it drops).
UNREAD_LIMIT = 100


class KernelWire:
    """Requests to the kernel side of a live kernel, and their answers (NotebookHandle's base)."""

    path: Any
    timeout: float | None
    session: Any
    closed: bool
    unread: int  # requests since IOPub was last read (see _send)
    released: list[int]  # keys of the objects whose Refs are gone, for the next request

    def close(self) -> Any:
        """Stop the kernel (NotebookHandle.close)."""
        raise NotImplementedError

    def _alive(self) -> None:
        if self.closed or self.session is None or self.session.kernel is None \
                or self.session.kernel.stopped:
            raise KernelCodeError(f"{self.path}: the kernel is gone (closed, timed out or "
                                  "died); open the notebook again", path=str(self.path))

    def _ask(self, req: dict[str, Any], name: str, timeout: float | None = None) -> Any:
        return self._answer(self._request(req, name, timeout), name)

    def _answer(self, data: dict[str, Any], name: str) -> Any:
        if "error" in data:
            error = data["error"]
            inner = [f for f in error["frames"] if f[0] is not None]
            raise self._code_error(error["ename"], error["evalue"], inner, name, error["text"])
        if "r" in data:
            return Ref(self, data["r"], name, data["type"], data["repr"], data.get("m", ()))
        if "stop" in data:
            return StopIteration
        return decode_value(data["v"]) if "v" in data else data.get("p")

    def _request(self, req: dict[str, Any], name: str,
                 timeout: float | None = None) -> dict[str, Any]:
        from jupyter_core.utils import run_sync

        self._alive()
        if self.released:  # the kernel side drops these objects first
            req = {**req, "drop": self.released[:]}
            del self.released[:len(req["drop"])]
        reply = run_sync(self._send)("", {"r": request_expression(req)}, timeout or self.timeout,
                                     name, None)
        found = reply["content"].get("user_expressions", {}).get("r", {})
        if found.get("status") != "ok":
            raise self._code_error(found.get("ename"), found.get("evalue"), [], name, "")
        return dict(json.loads(found["data"]["application/json"]["json"]))

    async def _send(self, code: str, expressions: dict[str, str], limit: float | None,
                    name: str, hook: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        """One execute request; past `limit`, interrupt it, and kill the kernel if it does not
        answer within INTERRUPT_WAIT."""
        kernel = self.session.kernel
        kc = kernel.kc
        try:
            if hook is not None:
                # stop_on_error=False: a handle waits for each answer, so nothing is queued
                # behind a request; with True, ipykernel would abort the next one if it came
                # in before the kernel had finished "aborting the queue" after an error.
                return self._not_aborted(await kc.execute_interactive(
                    code, store_history=False, user_expressions=expressions,
                    stop_on_error=False, timeout=limit or None, output_hook=hook), name)
            # A request's answer is in its reply: its IOPub messages (status, and what the
            # call printed) are not waited for; whoever reads IOPub next skips them, and
            # so that they never fill its queue, they are taken here now and then.
            self.unread += 1
            if self.unread > UNREAD_LIMIT:
                await self._skip_iopub()
            return self._not_aborted(
                await kernel.reply(kernel.send_execute(code, expressions), limit or None), name)
        except TimeoutError:
            pass
        except RuntimeError:  # it died
            from .kernel.notebook_kernel import describe_exit

            died = describe_exit(kernel.exit_status())
            self.close()
            raise KernelCodeError(f"{self.path}: {name}: the {died} before it answered; open "
                                  "the notebook again", path=str(self.path),
                                  ename="DeadKernelError", evalue=died) from None
        await self.session.kernel.interrupt()
        try:
            await kc.execute_interactive("", silent=True, store_history=False,
                                         timeout=INTERRUPT_WAIT, output_hook=lambda msg: None)
            fate = "interrupted; the kernel goes on"
        except TimeoutError:
            self.close()
            fate = "it did not answer the interrupt, so its kernel was killed"
        raise CallTimeout(f"{self.path}: {name} ran past its limit of {limit:g} s: {fate}",
                          path=str(self.path), ename="CallTimeout", evalue=fate)

    async def _skip_iopub(self) -> None:
        from queue import Empty

        self.unread = 0
        while True:
            try:
                await self.session.kernel.kc.iopub_channel.get_msg(timeout=0)
            except Empty:
                return

    def _not_aborted(self, reply: dict[str, Any], name: str) -> dict[str, Any]:
        """The reply; KernelCodeError if the kernel declined the request (status "aborted")
        instead of running it."""
        if reply["content"].get("status") != "aborted":
            return dict(reply)
        raise KernelCodeError(
            f"{self.path}: {name}: the kernel aborted this request without running it "
            "(ipykernel does so to requests that arrive just after one that failed with "
            "stop_on_error); send it again", path=str(self.path), ename="Aborted",
            evalue="the kernel aborted the request")

    def _code_error(self, ename: str | None, evalue: str | None, frames: list[Any], name: str,
                    text: str) -> KernelCodeError:
        from .failure_text import strip_ansi

        cell, line = (frames[-1][0], frames[-1][1]) if frames else (None, None)
        where = f"cell {cell}, line {line}" if cell is not None else name
        return KernelCodeError(f"{self.path}, {where}: {ename}: {evalue}\n\n"
                               f"{strip_ansi(text).rstrip()}".rstrip(),
                               path=str(self.path), cell=cell, line=line, ename=ename,
                               evalue=evalue)
