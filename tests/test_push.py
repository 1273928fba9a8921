"""nlptransfer/push.py: export a run to a hub-ready folder and push it through a fake Hugging Face Hub."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError

from nlptransfer.cli import push as push_cli
from nlptransfer.config import DataConfig, PushConfig, RunConfig, load_yaml
from nlptransfer.errors import ConfigError, HubError, ModelError
from nlptransfer.hub import push
from nlptransfer.predictor import load_model

TOKEN = "hf_NotARealTokenButSecret123"


def server_error(status: int = 503) -> HfHubHTTPError:
    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(f"{status} Server Error", response=httpx2.Response(status, request=request))


class FakeHub:
    """Stands in for `huggingface_hub.HfApi`: records calls, fails as told, keeps what was uploaded."""

    def __init__(self, failures: dict[str, list[Exception]] | None = None):
        self.failures = failures or {}
        self.calls: list[tuple[str, dict]] = []
        self.tokens: list[str] = []
        self.uploaded: list[dict[str, bytes]] = []

    def __call__(self, token=None):  # HfApi(token=...)
        self.tokens.append(token)
        return self

    def _call(self, name: str, **kwargs) -> None:
        self.calls.append((name, kwargs))
        if self.failures.get(name):
            raise self.failures[name].pop(0)

    def create_repo(self, repo_id, **kwargs):
        self._call("create_repo", repo_id=repo_id, **kwargs)
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self._call("create_branch", repo_id=repo_id, **kwargs)

    def upload_folder(self, **kwargs):
        self._call("upload_folder", **kwargs)
        folder = Path(kwargs["folder_path"])
        self.uploaded.append({str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()})

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(push, "HfApi", fake)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return fake


@pytest.fixture
def run_copy(full_run, tmp_path) -> Path:
    """A private copy of the finished run: pushing writes into the run folder."""
    return Path(shutil.copytree(full_run, tmp_path / "run"))


@pytest.fixture
def lora_copy(lora_run, tmp_path) -> Path:
    return Path(shutil.copytree(lora_run, tmp_path / "lora-run"))


def sleeps() -> tuple[list[float], Callable[[float], None]]:
    waited: list[float] = []
    return waited, waited.append


def test_export_is_a_loadable_hub_folder(full_run, tmp_path):
    dest = push.export_run(full_run, tmp_path / "export", repo_id="someone/tiny")
    names = {p.name for p in dest.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "training_config.yaml", "metrics.json"} <= names
    assert not any(name.endswith(".bin") for name in names)
    assert json.loads((dest / "config.json").read_text())["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    exported = (dest / "training_config.yaml").read_text()
    assert str(tmp_path.parent) not in exported  # no local paths of the author's machine
    run_cfg = load_yaml(RunConfig(), full_run / "config.yaml")
    shared = load_yaml(RunConfig(), dest / "training_config.yaml")
    assert (shared.model, shared.output_dir, shared.data.train_file) == (
        Path(run_cfg.model).name, full_run.name, Path(run_cfg.data.train_file).name)
    assert dataclasses.replace(shared, model=run_cfg.model, output_dir=run_cfg.output_dir,
                               data=dataclasses.replace(shared.data, train_file=run_cfg.data.train_file)) == run_cfg
    assert ModelCard((dest / "README.md").read_text()).data.model_name == "tiny"
    texts = ["a great movie", "terrible food"]
    assert load_model(dest).predict(texts) == load_model(full_run).predict(texts)

    again = push.export_run(full_run, dest)  # exporting twice replaces the folder, leaving nothing behind
    assert {p.name for p in again.iterdir()} == names
    assert not list(tmp_path.glob(".*"))


def test_lora_export_merged_with_adapter_or_adapter_only(lora_run, tmp_path):
    merged = push.export_run(lora_run, tmp_path / "merged")
    assert (merged / "model.safetensors").is_file()
    assert {p.name for p in (merged / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors",
                                                                  "labels.json", "tokenizer.json"}
    assert not (merged / "adapter" / "README.md").exists()  # peft's placeholder card is not shipped

    adapter = push.export_run(lora_run, tmp_path / "adapter", merged=False)
    assert not (adapter / "model.safetensors").exists() and (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "labels.json").read_text()) == {"task": "classification",
                                                                 "label_names": ["neg", "neu", "pos"]}
    assert ModelCard((adapter / "README.md").read_text()).data.library_name == "peft"
    texts = ["a great movie", "terrible food"]
    expected = [row["label"] for row in load_model(lora_run).predict(texts)]
    # a local base checkpoint is named by its folder's name only: on another machine it is given as base_model
    base = load_yaml(RunConfig(), lora_run / "config.yaml").model
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == Path(base).name
    assert [row["label"] for row in load_model(adapter, base_model=base).predict(texts)] == expected
    merged_predictor = load_model(merged)
    assert merged_predictor.source == str(merged)  # the merged model, not the adapter beside it
    assert [row["label"] for row in merged_predictor.predict(texts)] == expected


def local_paths_in(folder: Path, *paths: Path | str) -> dict[str, list[str]]:
    """The files under `folder` whose bytes contain one of `paths` (or its resolved form)."""
    needles = {str(p) for p in paths} | {str(Path(p).resolve()) for p in paths}
    found = {}
    for file in folder.rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            hits = sorted(n for n in needles if n.encode() in data)
            if hits:
                found[str(file.relative_to(folder))] = hits
    return found


@pytest.mark.parametrize("merged", [True, False])
def test_no_exported_file_holds_a_local_path(full_run, lora_run, reviews_csv, tiny_model_dir, tmp_path_factory,
                                             tmp_path, merged):
    run = full_run if merged else lora_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert str(reviews_csv) in metrics["data"]["source"]  # the run folder itself keeps the full paths
    dest = push.export_run(run, tmp_path / "export", merged=merged)
    assert local_paths_in(dest, tmp_path_factory.getbasetemp(), reviews_csv.parent, tiny_model_dir) == {}
    exported = json.loads((dest / "metrics.json").read_text())
    assert exported["data"]["source"] == "local files: reviews.csv"
    assert {k: v for k, v in exported.items() if k != "data"} == {k: v for k, v in metrics.items() if k != "data"}


def test_adapter_names_its_base_by_hub_id(lora_run, tmp_path):
    push.copy_adapter(lora_run / "adapter", tmp_path / "adapter", RunConfig(model="minilm", strategy="lora"))
    settings = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert settings["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_portable_config_drops_local_paths_and_names_known_checkpoints():
    from nlptransfer import catalog

    cfg = RunConfig(model=str(catalog.resolve_model("minilm")), output_dir="/home/alice/runs/x",
                    data=DataConfig(train_file="~/data/reviews.csv", test_file="data/test.csv",
                                    validation_file="C:\\Users\\alice\\val.csv"))
    shared = push.portable_config(cfg)
    assert shared.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert shared.output_dir == "x" and shared.data.train_file == "reviews.csv"
    assert shared.data.test_file == "data/test.csv"  # relative paths say nothing about the machine
    assert shared.data.validation_file.endswith("val.csv") and "alice" not in shared.data.validation_file
    assert push.portable_config(RunConfig(model="bert-base-uncased")).model == "bert-base-uncased"


def test_export_refuses_what_is_not_a_run(full_run, tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="is not a finished run folder"):
        push.export_run(tiny_model_dir, tmp_path / "export")
    with pytest.raises(ConfigError, match="merged=false ships an adapter .*, but .* used strategy=full"):
        push.export_run(full_run, tmp_path / "export", merged=False)


def test_push_creates_the_repo_and_uploads_in_one_commit(hub, run_copy):
    url = push.push_run(run_copy, PushConfig(repo_id="someone/tiny", private=True))
    assert url == "https://huggingface.co/someone/tiny"
    assert hub.tokens == [TOKEN]
    assert hub.names() == ["create_repo", "upload_folder"]
    assert hub.calls[0][1] == {"repo_id": "someone/tiny", "private": True, "exist_ok": True}
    upload = hub.calls[1][1]
    assert upload["repo_id"] == "someone/tiny" and upload["revision"] is None
    assert Path(upload["folder_path"]) == run_copy / "export"
    assert {"config.json", "model.safetensors", "README.md", "training_config.yaml"} <= set(hub.uploaded[0])


def test_pushing_twice_is_harmless(hub, run_copy):
    push.push_run(run_copy, PushConfig(repo_id="someone/tiny"))
    push.push_run(run_copy, PushConfig(repo_id="someone/tiny"))
    assert hub.names() == ["create_repo", "upload_folder"] * 2
    assert hub.uploaded[0] == hub.uploaded[1]


def test_revision_creates_the_branch(hub, run_copy):
    push.push_run(run_copy, PushConfig(repo_id="someone/tiny", revision="experiment"))
    assert hub.names() == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[1][1] == {"repo_id": "someone/tiny", "branch": "experiment", "exist_ok": True}
    assert hub.calls[2][1]["revision"] == "experiment"


def test_transient_failures_are_retried_with_backoff(hub, run_copy):
    hub.failures = {"create_repo": [httpx2.ConnectTimeout("timed out")],
                    "upload_folder": [server_error(503), server_error(502)]}
    waited, sleep = sleeps()
    push.push_run(run_copy, PushConfig(repo_id="someone/tiny"), sleep=sleep)
    assert hub.names() == ["create_repo", "create_repo", "upload_folder", "upload_folder", "upload_folder"]
    assert waited == [2.0, 2.0, 4.0]
    assert len(hub.uploaded) == 1


def test_gives_up_after_the_last_attempt_and_keeps_the_export(hub, run_copy):
    hub.failures = {"upload_folder": [server_error(500) for _ in range(push.ATTEMPTS)]}
    waited, sleep = sleeps()
    with pytest.raises(HubError, match=rf"failed after {push.ATTEMPTS} attempts: 500 Server Error; "
                                       rf"the export in .*export is intact"):
        push.push_run(run_copy, PushConfig(repo_id="someone/tiny"), sleep=sleep)
    assert waited == [2.0, 4.0, 8.0, 16.0]
    assert hub.uploaded == []
    assert load_model(run_copy / "export").predict(["a great movie"])[0]["label"] in {"neg", "neu", "pos"}


def test_refusals_are_not_retried(hub, run_copy):
    hub.failures = {"create_repo": [server_error(401)]}
    waited, sleep = sleeps()
    with pytest.raises(HubError, match="401 Server Error; check that the token"):
        push.push_run(run_copy, PushConfig(repo_id="someone/tiny"), sleep=sleep)
    assert waited == [] and hub.names() == ["create_repo"]


def test_no_token(hub, run_copy, monkeypatch):
    monkeypatch.setattr(push, "get_token", lambda: None)
    with pytest.raises(HubError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        push.push_run(run_copy, PushConfig(repo_id="someone/tiny"))
    assert hub.calls == [] and not (run_copy / "export").exists()


def test_check_push_fails_fast(hub, monkeypatch):
    push.check_push(PushConfig())  # no repo: nothing to check
    push.check_push(PushConfig(repo_id="someone/tiny"))
    with pytest.raises(ConfigError, match="bad repo id 'some one/tiny'"):
        push.check_push(PushConfig(repo_id="some one/tiny"))
    monkeypatch.setattr(push, "get_token", lambda: None)
    with pytest.raises(HubError, match="no Hugging Face token"):
        push.check_push(PushConfig(repo_id="someone/tiny"))
    assert hub.calls == []


def test_publish_writes_the_card_and_pushes_only_when_asked(hub, run_copy):
    assert push.publish(run_copy, RunConfig()) is None
    assert hub.calls == []
    assert ModelCard((run_copy / "README.md").read_text()).data.pipeline_tag == "text-classification"

    cfg = RunConfig(push=PushConfig(repo_id="someone/tiny"))
    assert push.publish(run_copy, cfg) == "https://huggingface.co/someone/tiny"
    assert hub.names() == ["create_repo", "upload_folder"]
    assert "model-index:\n- name: tiny\n" in (run_copy / "README.md").read_text()


def test_cli_pushes_and_never_writes_the_token(hub, lora_copy, capsys):
    argv = [str(lora_copy), "repo_id=someone/tiny-lora", "private=true", "merged=false"]
    assert push_cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == f"pushed {lora_copy} to https://huggingface.co/someone/tiny-lora"
    assert hub.tokens == [TOKEN]
    assert "adapter_model.safetensors" in hub.uploaded[0] and "model.safetensors" not in hub.uploaded[0]
    written = [p for p in lora_copy.rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]


def test_cli_export_only(lora_copy, capsys, tmp_path):
    assert push_cli.main([str(lora_copy), f"export_dir={tmp_path / 'out'}"]) == 0
    assert "exported" in capsys.readouterr().out
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["{run}", "repo_id=someone/bad--name"], "bad repo id 'someone/bad--name'"),
    (["{run}", "repo_id=a/b/c"], "bad repo id 'a/b/c'"),
    (["{tiny}", "repo_id=someone/tiny"], "is not a finished run folder"),
    (["{run}", "{run}", "repo_id=someone/tiny"], "pass one run folder"),
    (["{run}", "repo=someone/tiny"], "unknown option 'repo'; did you mean: repo_id"),
])
def test_cli_errors_are_one_line_with_exit_2(hub, capsys, run_copy, tiny_model_dir, argv, message):
    argv = [a.format(run=run_copy, tiny=tiny_model_dir) for a in argv]
    assert push_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert hub.calls == []


def test_cli_no_token_exits_2(hub, run_copy, capsys, monkeypatch):
    monkeypatch.setattr(push, "get_token", lambda: None)
    assert push_cli.main([str(run_copy), "repo_id=someone/tiny"]) == 2
    assert capsys.readouterr().err.startswith("error: no Hugging Face token")


def test_cli_final_failure_exits_2_and_debug_raises(hub, run_copy, capsys, monkeypatch):
    monkeypatch.setattr(push, "FIRST_DELAY", 0.0)
    hub.failures = {"upload_folder": [server_error(503) for _ in range(2 * push.ATTEMPTS)]}
    assert push_cli.main([str(run_copy), "repo_id=someone/tiny"]) == 2
    assert "is intact" in capsys.readouterr().err
    with pytest.raises(HubError):
        push_cli.main([str(run_copy), "repo_id=someone/tiny", "--debug"])
    assert (run_copy / "export" / "model.safetensors").is_file()


def test_is_transient():
    from huggingface_hub.errors import OfflineModeIsEnabled

    assert push.is_transient(server_error(503)) and push.is_transient(server_error(429))
    assert push.is_transient(httpx2.ReadTimeout("slow")) and push.is_transient(httpx2.ConnectError("refused"))
    assert push.is_transient(TimeoutError()) and push.is_transient(ConnectionResetError())
    assert not push.is_transient(server_error(404)) and not push.is_transient(server_error(403))
    assert not push.is_transient(OfflineModeIsEnabled("offline")) and not push.is_transient(FileNotFoundError())


def test_export_dir_that_is_a_file_is_one_line(run_copy, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert push_cli.main([str(run_copy), f"export_dir={notes / 'export'}"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: cannot export to {notes / 'export'}: {notes} is a file, not "
                                               "a folder; choose another export_dir")
    assert notes.read_text() == "mine" and not list(tmp_path.glob(".*"))


def test_scrubbing_replaces_whole_paths_only(tmp_path):
    cfg = RunConfig(model="/data", output_dir="/data/runs/x",
                    data=DataConfig(name=None, train_file="/data/train.csv", validation_file="C:\\Users\\al\\v.csv"))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "README.md").write_text("see https://huggingface.co/datasets/glue and /datasets/x; trained on "
                                      "/data/train.csv, /data/runs/x/model and /data\n")
    (folder / "metrics.json").write_text(json.dumps({"source": "local files: /data/train.csv, C:\\Users\\al\\v.csv",
                                                     "elsewhere": "/home/al/notes.txt", "relative": "data/t.csv"}))
    (folder / "tokenizer.json").write_text(json.dumps({"vocab": {"/data": 1}}))
    push.scrub_local_paths(folder, cfg, tmp_path / "run")
    assert (folder / "README.md").read_text() == (
        "see https://huggingface.co/datasets/glue and /datasets/x; trained on train.csv, x/model and data\n")
    assert json.loads((folder / "metrics.json").read_text()) == {
        "source": "local files: train.csv, v.csv", "elsewhere": "notes.txt", "relative": "data/t.csv"}
    assert json.loads((folder / "tokenizer.json").read_text()) == {"vocab": {"/data": 1}}  # tokens are no paths
