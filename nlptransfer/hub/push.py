"""Share a run: export it to a hub-ready folder and push that folder to the Hugging Face Hub.

    python -m nlptransfer.push RUN_DIR                       # export only, into RUN_DIR/export
    python -m nlptransfer.push RUN_DIR repo_id=user/name [private=true] [revision=BRANCH] [merged=false]

The export holds the model (safetensors weights, config with labels, tokenizer), README.md (the
model card), training_config.yaml, metrics.json and the run's figures (curves.png, ...); a LoRA
run adds its adapter (with its head) in adapter/, or with merged=false ships the adapter alone. No
exported file shows the author's disk: every local path the run was given (data files, the base
checkpoint, the run folder) appears by its name, a known checkpoint by its hub id.
The push creates the repo if needed and uploads the folder in one commit, retrying transient
failures (5xx, timeouts, dropped connections) with exponential backoff. The token comes from
HF_TOKEN or `hf auth login` and is never written anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path, PureWindowsPath
from typing import TypeVar

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .. import catalog, strategies
from ..config import RunConfig, load_yaml, to_yaml
from ..errors import ConfigError, HubError, ModelError
from ..options import PushConfig
from ..outputs import folders
from ..outputs.files import write_json, write_text
from ..outputs.model_files import LABELS_FILE, first_line
from ..outputs.plots import PLOT_FILES
from .card import base_model_id, run_card, run_label_names
from .multitask_card import multitask_run_card

try:  # huggingface_hub >= 2 talks through httpx2, 1.x through httpx
    from httpx2 import NetworkError, TimeoutException
except ImportError:  # pragma: no cover
    from httpx import NetworkError, TimeoutException

logger = logging.getLogger("nlptransfer")

T = TypeVar("T")
ATTEMPTS = 5
"""Tries per hub call before a push gives up."""
FIRST_DELAY = 2.0
"""Seconds before the first retry; doubled after each failure, at most MAX_DELAY."""
MAX_DELAY = 60.0
MANAGED_FILES = ["*.safetensors", "*.bin", "*.json", "*.txt", "*.model", "*.yaml", "*.png", "README.md"]
"""Files an export owns in the repo: a new push deletes the ones it no longer has."""
EXPORT = folders.Kind("export", (*MANAGED_FILES, "*.py", "*.pkl", "adapter", "1_Pooling", "2_Normalize"),
                      ("training_config.yaml",))
"""A hub-ready export folder: a new export replaces one (marked, or holding only what an export writes), never
another folder."""


def export_run(run_dir: str | Path, dest: str | Path, merged: bool = True, repo_id: str | None = None,
               license: str | None = None) -> Path:
    """Write a hub-ready copy of a finished run into `dest` (replaced atomically) and return it.

    `merged=True`: the model (for LoRA the merged one) plus, for LoRA, adapter/; `merged=False`
    (LoRA only): the adapter with its head, loadable with peft onto its base model.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    cfg = check_run(run_dir)
    blocking = next((path for path in (dest, *dest.absolute().parents) if path.is_file()), None)
    if blocking is not None:
        raise ConfigError(f"cannot export to {dest}: {blocking} is a file, not a folder; choose another export_dir")
    folders.check_writable(dest, EXPORT, "export_dir", replacing=True, inputs=[("RUN_DIR", run_dir)], whole=True)
    adapter_only = not merged
    strategy = strategies.get(cfg.strategy)
    if adapter_only and not strategy.adapter:
        raise ConfigError(f"merged=false ships an adapter (LoRA, ...), but {run_dir} used strategy={cfg.strategy}, "
                          "which has none; pass merged=true")
    staging = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if adapter_only:
            copy_adapter(run_dir / "adapter", staging, cfg)
        else:
            copy_files(run_dir / "model", staging)
            if strategy.adapter:
                copy_adapter(run_dir / "adapter", staging / "adapter", cfg)
        write_text(staging / "training_config.yaml", to_yaml(portable_config(cfg)))
        shutil.copy2(run_dir / "metrics.json", staging / "metrics.json")
        for figure in PLOT_FILES:  # the card shows them by relative path
            if (run_dir / figure).is_file():
                shutil.copy2(run_dir / figure, staging / figure)
        write_text(staging / "README.md", run_card(run_dir, repo_id=repo_id, adapter_only=adapter_only,
                                                   license=license))
        scrub_local_paths(staging, cfg, run_dir)
        folders.claim(staging, EXPORT)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)
    return dest


def local_file_name(value: str) -> str | None:
    """The file or folder name of an absolute or home-relative path (`/...`, `~...`, `C:\\...`): where
    something sat on the author's disk; None for anything else (relative paths, names, hub ids)."""
    if value.startswith(("/", "~")):
        return Path(value).name
    if len(value) > 2 and value[1] == ":" and value[2] in "\\/":
        return PureWindowsPath(value).name
    return None


def portable_config(cfg: RunConfig) -> RunConfig:
    """The run's config without the author's local paths: files and folders by name, a local copy of
    a known checkpoint by its hub id. A published training_config.yaml should not show one's disk."""

    def portable(value):
        if dataclasses.is_dataclass(value):
            return dataclasses.replace(value, **{f.name: portable(getattr(value, f.name))
                                                 for f in dataclasses.fields(value) if f.init})
        return (local_file_name(value) or value) if isinstance(value, str) else value

    return portable(dataclasses.replace(cfg, model=base_model_id(cfg.model) or cfg.model))


VOCABULARY_FILES = {"tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json",
                    "special_tokens_map.json"}
"""The tokenizer's own files: their strings are tokens, never paths of the author's machine."""
TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".md", ".txt")


def local_path_names(cfg: RunConfig, run_dir: Path) -> list[tuple[str, str]]:
    """(local path, what an export shows instead) for every path the run was given and the run folder itself,
    as written and resolved, longest first: a data file by its name, a known checkpoint by its hub id."""
    pairs = {str(run_dir.resolve()): run_dir.resolve().name}

    def collect(value, portable_name=None):
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                collect(getattr(value, f.name))
            return
        if not isinstance(value, str) or not value:
            return
        try:
            path = Path(value).expanduser()
            if not (local_file_name(value) or path.exists()):
                return
            forms = {value} if local_file_name(value) else set()
            forms |= {str(path.absolute()), str(path.resolve())}
        except (OSError, RuntimeError, ValueError):  # `~nobody/x`, a NUL byte: only the value as written
            forms = {value} if local_file_name(value) else set()
        name = portable_name or local_file_name(value) or Path(value).name or "."
        pairs.update(dict.fromkeys(forms, name))

    collect(dataclasses.replace(cfg, model=""))
    for model in (cfg.model, catalog.resolve_model(cfg.model)):  # a short name's packaged copy too
        collect(model, base_model_id(cfg.model))
    variants = {}
    for local, name in pairs.items():
        if len(local) > 1:  # never "/" alone
            variants[local] = name
            variants[json.dumps(local)[1:-1]] = json.dumps(name)[1:-1]  # as JSON files write it (C:\\...)
            variants[json.dumps(local, ensure_ascii=True)[1:-1]] = json.dumps(name, ensure_ascii=True)[1:-1]
    return sorted(variants.items(), key=lambda pair: -len(pair[0]))


def scrub_local_paths(folder: Path, cfg: RunConfig, run_dir: Path) -> None:
    """Rewrite every text file under `folder` (but the tokenizer's vocabulary) without the author's local paths:
    the run's paths by name (`local_path_names`), and any other JSON value that is an absolute path by its name."""
    names = dict(local_path_names(cfg, run_dir))
    # a whole path only: `/data` is not the start of `/datasets` nor the end of `https://huggingface.co/data`
    local = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, names)) + r")(?![\w.-])")
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES or path.name in VOCABULARY_FILES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        scrubbed = local.sub(lambda match: names[match.group(1)], text)
        if path.suffix == ".json":
            scrubbed = portable_json(scrubbed)
        if scrubbed != text:
            write_text(path, scrubbed)


def portable_json(text: str) -> str:
    """JSON text whose string values that are absolute local paths become their names (others unchanged)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text

    def portable(value):
        if isinstance(value, dict):
            return {key: portable(item) for key, item in value.items()}
        if isinstance(value, list):
            return [portable(item) for item in value]
        return (local_file_name(value) or value) if isinstance(value, str) else value

    cleaned = portable(data)
    return text if cleaned == data else json.dumps(cleaned, indent=2, ensure_ascii=False) + "\n"


def check_run(run_dir: Path) -> RunConfig:
    """The run's config; a `ModelError` when `run_dir` is not a finished run folder."""
    needed = ["config.yaml", "metrics.json", "model/config.json"]
    if (run_dir / "config.yaml").is_file() and load_yaml(RunConfig(), run_dir / "config.yaml").multitask.tasks:
        raise ModelError(f"{run_dir} is a multi-task run, which does not push to the Hub yet; each model/<task>/ "
                         "folder is a transformers model with the run's README.md describing it: upload one "
                         "with huggingface-cli upload")
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise ModelError(f"{run_dir} is not a finished run folder (missing {', '.join(missing)}); pass the "
                         "output_dir of a run of python -m nlptransfer.run")
    cfg = load_yaml(RunConfig(), run_dir / "config.yaml")
    if strategies.get(cfg.strategy).adapter and not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise ModelError(f"{run_dir} is a strategy={cfg.strategy} run without its adapter/ folder; rerun it or "
                         "pass merged=true")
    return cfg


def copy_files(source: Path, dest: Path) -> None:
    """Copy a saved model or adapter folder, leaving out hidden files and peft's placeholder card."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith(".") and path.name != "README.md":
            shutil.copy2(path, dest / path.name)


def copy_adapter(adapter_dir: Path, dest: Path, cfg: RunConfig) -> None:
    """The adapter with its head, its base named by hub id when known, and its labels beside it."""
    copy_files(adapter_dir, dest)
    settings_file = dest / "adapter_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    base = base_model_id(cfg.model)
    if base:  # the local (e.g. packaged) folder means nothing on another machine
        settings["base_model_name_or_path"] = base
    write_json(settings_file, settings)
    write_json(dest / LABELS_FILE, {"task": cfg.task, "label_names": run_label_names(adapter_dir.parent)})


def check_repo_id(repo_id: str) -> str:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ConfigError(f"bad repo id '{repo_id}' ({first_line(e).rstrip('.')}); use user/name "
                          "(letters, digits, '-', '_' and '.')") from None
    return repo_id


def hub_token() -> str:
    """The user's token: HF_TOKEN, else the one saved by `hf auth login`."""
    token = get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then push again")
    return token


def check_push(push: PushConfig) -> None:
    """Fail fast (before a run trains) on a malformed repo id or a missing token; nothing to check without one."""
    if push.repo_id is not None:
        check_repo_id(push.repo_id)
        hub_token()


def is_transient(error: Exception) -> bool:
    """Whether retrying can help: server errors, rate limits, timeouts and dropped connections."""
    if isinstance(error, OfflineModeIsEnabled):
        return False
    if isinstance(error, HfHubHTTPError):
        status = getattr(error.response, "status_code", None)
        return status is None or status >= 500 or status == 429
    return isinstance(error, (TimeoutError, ConnectionError, TimeoutException, NetworkError))


def refusal_hint(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, OfflineModeIsEnabled):
        return "; HF_HUB_OFFLINE is set: unset it to push"
    if status in (401, 403):
        return "; check that the token (HF_TOKEN or `hf auth login`) may write to this repo"
    return ""


def with_retries(action: Callable[[], T], what: str, attempts: int = ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `action`, retrying transient hub failures with exponential backoff; `HubError` at the end."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (OSError, TimeoutException, NetworkError) as e:  # every hub failure is one of these
            if not is_transient(e):
                raise HubError(f"{what} failed: {first_line(e)}{refusal_hint(e)}") from None
            if attempt == attempts:
                raise HubError(f"{what} failed after {attempts} attempts: {first_line(e)}") from None
            delay = min(FIRST_DELAY * 2 ** (attempt - 1), MAX_DELAY)
            logger.warning("%s failed (%s); retry %d of %d in %.0fs", what, first_line(e), attempt,
                           attempts - 1, delay)
            sleep(delay)


def push_folder(folder: Path, push: PushConfig, sleep: Callable[[float], None] = time.sleep) -> str:
    """Create the repo (if needed) and upload `folder` to it in one commit; returns the repo's URL."""
    repo_id = check_repo_id(push.repo_id or "")
    api = HfApi(token=hub_token())
    url = with_retries(lambda: api.create_repo(repo_id, private=push.private, exist_ok=True),
                       f"creating {repo_id}", sleep=sleep)
    if push.revision:
        with_retries(lambda: api.create_branch(repo_id, branch=push.revision, exist_ok=True),
                     f"creating branch {push.revision} of {repo_id}", sleep=sleep)
    with_retries(lambda: api.upload_folder(repo_id=repo_id, folder_path=folder, revision=push.revision,
                                           commit_message="Upload model trained with nlptransfer",
                                           delete_patterns=MANAGED_FILES),
                 f"uploading {folder} to {repo_id}", sleep=sleep)
    return str(url)


def push_run(run_dir: str | Path, push: PushConfig, merged: bool = True, export_dir: str | Path | None = None,
             license: str | None = None, sleep: Callable[[float], None] = time.sleep) -> str:
    """Export the run (into RUN_DIR/export by default) and push it; the export stays if the push fails."""
    run_dir = Path(run_dir)
    check_run(run_dir)
    check_push(push)  # before the export: a bad repo id or a missing token needs no export
    folder = export_run(run_dir, Path(export_dir) if export_dir else run_dir / "export", merged=merged,
                        repo_id=push.repo_id, license=license)
    try:
        return push_folder(folder, push, sleep=sleep)
    except HubError as e:
        raise HubError(f"{e}; the export in {folder} is intact: push it again with "
                       f"python -m nlptransfer.push {run_dir} repo_id={push.repo_id}") from None


def publish(results_or_run_dir, cfg: RunConfig, sleep: Callable[[float], None] = time.sleep) -> str | None:
    """End of a run: write the model card into the run folder; push the run when `cfg.push.repo_id` is set.

    Takes the `Results` of `pipeline.run` (or the run folder); returns the repo URL when it pushed.
    """
    run_dir = Path(getattr(results_or_run_dir, "output_dir", results_or_run_dir))
    if cfg.multitask.tasks:  # one card for every task (a multi-task run does not push)
        write_text(run_dir / "README.md", multitask_run_card(run_dir, repo_id=cfg.push.repo_id))
        return None
    write_text(run_dir / "README.md", run_card(run_dir, repo_id=cfg.push.repo_id))
    if not cfg.push.repo_id:
        return None
    url = push_run(run_dir, cfg.push, sleep=sleep)
    logger.info("pushed to %s", url)
    return url
