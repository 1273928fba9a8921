"""The transfer strategies, found by name: `get("lora")`. One file each; adding one is one line below.

Every strategy follows the protocol of `base.Strategy`; see docs/ARCHITECTURE.md for a worked example.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import Fitting, Strategy
from .bitfit import BitFit
from .contrastive import Contrastive
from .frozen import Frozen
from .full import Full
from .gradual import Gradual
from .ia3 import IA3
from .lora import Lora
from .zeroshot import ZeroShot

REGISTRY: dict[str, Strategy] = {strategy.name: strategy for strategy in (
    Full(), Frozen(), Lora(), Gradual(), BitFit(), IA3(), Contrastive(), ZeroShot(),
)}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Strategy:
    """The strategy registered under `name`; an unknown name is a one-line error listing the known ones."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"strategy must be one of {', '.join(REGISTRY)}; got '{name}'") from None


def sections() -> dict[str, type]:
    """Every strategy's option sections (name -> dataclass), in registry order: fields of `RunConfig`."""
    return {name: section for strategy in REGISTRY.values() for name, section in strategy.sections.items()}


def foreign_sections(strategy: Strategy) -> list[str]:
    """The option sections of the other strategies (their values do not matter to `strategy`)."""
    return [name for name in sections() if name not in strategy.sections]


__all__ = ["Fitting", "Strategy", "foreign_sections", "get", "names", "sections"]
