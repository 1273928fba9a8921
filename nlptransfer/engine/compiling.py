"""`train.compile`: the trained module's call compiled by `torch.compile` (dynamic shapes), eager where it fails.

Off by default: on a 2-core CPU a compiled MiniLM step measured 1.05x the eager one after a 50 s warm-up
(benchmarks/README.md, "Levers"); where it pays (a GPU, longer sequences) its compile time is counted in the run's
training seconds. The module's call goes through the compiled function only while `engine.loop.fit` trains (the
slot `nn.Module.compile` uses, so Accelerate's autocast wrapper of `forward` is compiled with it), and parameter
names, state dicts, checkpoints and the saved model are those of the eager module; `fit` puts the eager call back.

A compilation that fails (no C compiler for inductor, an operation dynamo cannot trace) logs one warning with the
reason and the batch runs eager, as every later one; errors that are not torch.compile's are raised as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..outputs.model_files import first_line

logger = logging.getLogger(__name__)


class CompiledCall:
    """A module's call through `torch.compile(dynamic=True)`, falling back to the eager call for good on the first
    compilation failure."""

    def __init__(self, module: nn.Module) -> None:
        self.eager = module._call_impl
        self.compiled = torch.compile(self.eager, dynamic=True)
        self.failure: str | None = None
        self.first_call_seconds: float | None = None

    def __call__(self, *args, **kwargs):
        if self.failure is not None:
            return self.eager(*args, **kwargs)
        from torch._dynamo.exc import TorchDynamoException

        started = time.perf_counter()
        try:
            output = self.compiled(*args, **kwargs)
        except TorchDynamoException as e:  # BackendCompilerFailed, Unsupported, ...: compilation, not the model
            self.failure = f"{type(e).__name__}: {first_line(e)}"
            logger.warning("train.compile: torch.compile failed (%s); training without compilation (set "
                           "train.compile=false to skip the attempt)", self.failure)
            return self.eager(*args, **kwargs)
        if self.first_call_seconds is None:
            self.first_call_seconds = time.perf_counter() - started
            logger.info("train.compile: first step compiled in %.1f s", self.first_call_seconds)
        return output


@contextmanager
def compiled(module: nn.Module, enabled: bool = True) -> Iterator[CompiledCall | None]:
    """`module`'s calls routed through a compiled call inside the block (`enabled`), its own after.

    The slot is `nn.Module.compile`'s (`_compiled_call_impl`, which `nn.Module.__call__` reads); a module a caller
    compiled before keeps its own compilation."""
    if not enabled or module._compiled_call_impl is not None:
        yield None
        return
    call = CompiledCall(module)
    module._compiled_call_impl = call
    try:
        yield call
    finally:
        if module._compiled_call_impl is call:
            module._compiled_call_impl = None
