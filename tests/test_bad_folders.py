"""Bad-input catalogue of output folders (outputs/folders.py, outputs/run_folder.py): every command writes only into
a folder it wrote (a run, a sweep, a comparison, a curve, an export, an adapted encoder), removes only what it wrote,
never a folder holding its inputs, and writes nothing before its checks pass; each refusal is one line, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nlptransfer import adapt
from nlptransfer.cli import compare, curve, push, sweep
from nlptransfer.cli.run import main as run_main
from nlptransfer.config import PretrainConfig, RunConfig
from nlptransfer.errors import ConfigError
from nlptransfer.outputs.folders import MARKER

pytestmark = pytest.mark.usefixtures("one_thread")


def user_folder(folder: Path, data: Path | None = None) -> dict[str, bytes]:
    """A folder of the user's own files (notes, a csv, a sub-folder); returns them by path."""
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "sub" / "table.csv").write_text("a,b\n1,2\n")
    if data is not None:
        shutil.copy(data, folder / "mydata.csv")
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_args(model: str, csv: Path | str, output_dir: Path | str, *extra: str) -> list[str]:
    return ["recipe=sentiment", f"model={model}", f"data.train_file={csv}", "data.name=null", "data.max_length=32",
            "train.epochs=1", "train.batch_size=8", f"output_dir={output_dir}", "--quiet", *extra]


def one_line(capsys, expected: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    return lines[0]


def test_a_missing_data_file_writes_nothing(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    assert run_main(run_args(tiny_model_dir, tmp_path / "nope.csv", out)) == 2
    one_line(capsys, "data file not found")
    assert not out.exists()


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "empty folder"])
def test_a_run_refused_by_its_data_leaves_no_folder_or_file(tmp_path, tiny_model_dir, reviews_csv, capsys, existing):
    """A check only the reader can make (a column) fails after the folder is taken: what the run wrote goes again."""
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    assert run_main(run_args(tiny_model_dir, reviews_csv, out, "data.text_column=nope")) == 2
    one_line(capsys, "nope")
    assert out.exists() == existing and (not existing or not any(out.iterdir()))


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_folder_of_the_users_files_is_never_emptied_nor_called_a_run(tmp_path, tiny_model_dir, reviews_csv, capsys,
                                                                        overwrite):
    mine = tmp_path / "userdir2"
    before = user_folder(mine, reviews_csv)
    argv = run_args(tiny_model_dir, mine / "mydata.csv", mine, f"overwrite={str(overwrite).lower()}")
    assert run_main(argv) == 2
    line = one_line(capsys, "holds files that nlptransfer did not write (mydata.csv, notes.txt, sub)")
    assert "unfinished run" not in line
    assert snapshot(mine) == before and not (mine / MARKER).exists()


def test_output_dir_dot_with_overwrite_leaves_the_working_folder_alone(tmp_path, tiny_model_dir, reviews_csv,
                                                                       monkeypatch, capsys):
    before = user_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run_main(run_args(tiny_model_dir, reviews_csv, ".", "overwrite=true")) == 2
    one_line(capsys, "output_dir=. holds files that nlptransfer did not write")
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_run_folder_holding_the_runs_own_data(tmp_path, tiny_model_dir, reviews_csv, full_run,
                                                                   capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    shutil.copy(reviews_csv, run / "model" / "mydata.csv")  # inside what overwrite removes
    assert run_main(run_args(tiny_model_dir, run / "model" / "mydata.csv", run, "overwrite=true")) == 2
    one_line(capsys, "an input of this command")
    assert (run / "model" / "mydata.csv").is_file() and (run / "metrics.json").is_file()


def test_an_unfinished_run_without_a_checkpoint_is_not_offered_resume(tmp_path, tiny_model_dir, reviews_csv, capsys):
    """After a full disk with checkpoints off: the rerun's message says what works (overwrite), not resume=auto."""
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text('{"kind": "run"}')
    for name in ("config.yaml", "train.log", "predictions.jsonl"):
        (run / name).write_text("x")
    assert run_main(run_args(tiny_model_dir, reviews_csv, run)) == 2
    line = one_line(capsys, "no complete checkpoint to resume from")
    assert "overwrite=true" in line and "resume=auto" not in line


def test_push_export_dir_replaces_only_an_export(tmp_path, full_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    mine = tmp_path / "mine"
    before = user_folder(mine)
    assert push.main([str(run), f"export_dir={mine}"]) == 2
    one_line(capsys, "export_dir=")
    assert snapshot(mine) == before
    run_files = snapshot(run)
    assert push.main([str(run), f"export_dir={run}"]) == 2  # the run folder itself
    one_line(capsys, "is a run folder, not an export folder")
    assert snapshot(run) == run_files
    for _ in range(2):  # its own export is replaced
        assert push.main([str(run), f"export_dir={tmp_path / 'export'}"]) == 0
    assert (tmp_path / "export" / "training_config.yaml").is_file() and (tmp_path / "export" / MARKER).is_file()


def test_pretrain_output_dir_never_replaces_a_folder_of_files(tmp_path, tiny_model_dir):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"some text number {i}" for i in range(40)))
    mine = tmp_path / "mine"
    before = user_folder(mine)
    cfg = RunConfig(model=tiny_model_dir, pretrain=PretrainConfig(mlm=True, text_file=str(texts)))
    with pytest.raises(ConfigError, match="pretrain.output_dir=.*did not write .*notes.txt"):
        adapt.adapt_encoder(cfg, mine)
    assert snapshot(mine) == before


@pytest.mark.parametrize("command, extra", [
    (sweep.main, ["trials=2", "train.lr=loguniform(1e-5,1e-3)"]),
    (compare.main, ["strategies=full"]),
    (curve.main, ["sizes=10", "seeds=1"]),
], ids=["sweep", "compare", "curve"])
def test_tool_output_dirs_replace_only_their_own_folder(command, extra, tmp_path, tiny_model_dir, reviews_csv,
                                                         capsys):
    mine = tmp_path / "mine"
    before = user_folder(mine)
    assert command(run_args(tiny_model_dir, reviews_csv, mine, "overwrite=true", *extra)) == 2
    one_line(capsys, "holds files that nlptransfer did not write")
    assert snapshot(mine) == before
    assert command(run_args(tiny_model_dir, tmp_path / "nope.csv", tmp_path / "new", *extra)) == 2
    one_line(capsys, "data file not found")
    assert not (tmp_path / "new").exists()
