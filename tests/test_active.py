"""The active-learning command: to_label.csv round trip (by hand equals the simulation), terminal labeling with skip
and undo, and the bad-input catalogue (one line, exit 2, nothing written)."""

from __future__ import annotations

import csv
import io
import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
from helpers import write

from nlptransfer.active import labeling
from nlptransfer.active.state import ActiveFolder
from nlptransfer.cli.active import main

LABELS = "labels=[neg, neu, pos]"


@pytest.fixture
def pool_csv(tmp_path, reviews_csv):
    frame = pd.read_csv(reviews_csv)
    frame[["text"]].to_csv(tmp_path / "pool.csv", index=False)
    return tmp_path / "pool.csv"


def fill(path, truth: dict) -> None:
    rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
    for row in rows[1:]:
        row[3] = truth[row[0]]
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows(rows)


def test_file_round_trip_by_hand_equals_the_simulation(tmp_path, pool_csv, reviews_csv, tiny_model_dir):
    common = [LABELS, f"model={tiny_model_dir}", "batch_size=6", "strategy=frozen", "train.epochs=1", "--quiet"]
    hand = tmp_path / "hand"
    assert main([f"pool={pool_csv}", f"output_dir={hand}", *common]) == 0  # cold start: k-means picks
    to_label = hand / "to_label.csv"
    first = pd.read_csv(to_label)
    assert list(first.columns) == ["text", "suggestion", "confidence", "label"] and len(first) == 6
    fill(to_label, dict(pd.read_csv(reviews_csv).values.tolist()))
    assert main([f"output_dir={hand}", "--quiet"]) == 0  # the rerun takes the labels and trains round 1
    assert len(ActiveFolder(hand).labels()) == 6
    second = pd.read_csv(to_label)
    assert len(second) == 6 and not set(second.text) & set(first.text)
    assert second.suggestion.isin(["neg", "neu", "pos"]).all() and second.confidence.between(0, 1).all()
    rounds = ActiveFolder(hand).rounds()
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["validation_accuracy"] is not None
    assert "| 1 | 6 | breaking_ties |" in (hand / "report.md").read_text()
    assert (hand / "learning_curve.png").read_bytes().startswith(b"\x89PNG")

    simulated = tmp_path / "sim"
    assert main([f"oracle={reviews_csv}", f"output_dir={simulated}", "rounds=2", *common]) == 0
    assert [r["picks"] for r in ActiveFolder(simulated).rounds()] == [r["picks"] for r in rounds]


def batch_folder(tmp_path, texts, suggestion="pos") -> ActiveFolder:
    folder = ActiveFolder(tmp_path / "al").open()
    folder.write_batch({"round": 0, "items": [{"text": t, "suggestion": suggestion, "confidence": 0.6}
                                               for t in texts]})
    return folder


def test_terminal_labels_skips_and_undoes(tmp_path):
    folder = batch_folder(tmp_path, ["a b", "c d", "e f"])
    answers = iter(["1", "u", "2", "s", "", "q"])  # neg, take it back, neu; skip; the suggestion (pos)
    out = io.StringIO()
    ended = labeling.label_in_terminal(folder, ["neg", "neu", "pos"], False, 0, ask=lambda prompt: next(answers),
                                       out=out)
    assert ended == "skipped"
    assert folder.labels() == {"a b": "neu", "e f": "pos"}
    assert "took back the label of: a b" in out.getvalue()
    assert [r["label"] for r in folder.records()] == ["neg", None, "neu", "pos"]
    folder.close()


def test_terminal_via_stdin_ends_at_eof(tmp_path, monkeypatch):
    folder = batch_folder(tmp_path, ["a b", "c d"], suggestion=None)
    monkeypatch.setattr("sys.stdin", io.StringIO("3\n9\n1\n"))  # 9 is no key: asked again
    assert labeling.label_in_terminal(folder, ["neg", "neu", "pos"], False, 0, out=io.StringIO()) == "done"
    assert folder.labels() == {"a b": "pos", "c d": "neg"}
    folder.close()


def test_to_label_with_an_unknown_label_names_the_row_and_adds_nothing(tmp_path, capsys):
    folder = batch_folder(tmp_path, ["a b", "c d"])
    labeling.write_to_label(folder)
    folder.add_label("kept", "neg", "file", 0)
    folder.close()
    write(folder.path / "to_label.csv", "text,suggestion,confidence,label\na b,pos,0.6,pos\nc d,pos,0.6,posit\n")
    assert main([f"output_dir={folder.path}", "pool=" + str(write(tmp_path / "p.txt", "x y\n")), LABELS]) == 2
    error = capsys.readouterr().err.strip()
    assert "row 3: 'posit' is not a label name" in error and len(error.splitlines()) == 1
    assert ActiveFolder(folder.path).labels() == {"kept": "neg"}
    write(folder.path / "to_label.csv", "txt;label\na b;pos\n")  # edited into another shape
    assert main([f"output_dir={folder.path}", "pool=" + str(tmp_path / "p.txt"), LABELS]) == 2
    assert "lacks its text or label column" in capsys.readouterr().err
    assert ActiveFolder(folder.path).labels() == {"kept": "neg"}


def bad_inputs(tmp_path, pool_csv):
    empty = write(tmp_path / "empty.txt", "\n  \n")
    no_text = write(tmp_path / "notext.csv", "body\nhello there\n")
    labeled = write(tmp_path / "labeled.csv", "text,label\ngood,pos\nbad,negative\n")
    small = write(tmp_path / "small.txt", "one text\ntwo texts\nthree texts\n")
    labeled_small = write(tmp_path / "labeled_small.csv", "text,label\none text,pos\nother,neg\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    base = [LABELS, f"output_dir={tmp_path / 'out'}"]
    return busy, [
        ([f"pool={empty}", *base], "holds no text"),
        ([f"pool={no_text}", *base], "has no column 'text'"),
        ([f"pool={tmp_path / 'missing.csv'}", *base], "missing.csv"),
        ([f"pool={pool_csv}", f"labeled={labeled}", *base], "row 3: 'negative' is not a label name"),
        ([f"pool={pool_csv}", "batch_size=0", *base], "batch_size must be a whole number of at least 1"),
        ([f"pool={pool_csv}", "query=smart", *base], "unknown query 'smart'"),
        ([f"pool={pool_csv}", "score_sample=0", *base], "score_sample must be a whole number of at least 1"),
        ([f"pool={pool_csv}", "labels=[pos]", f"output_dir={tmp_path / 'out'}"], "two label names"),
        ([f"pool={pool_csv}", "trian.epochs=1", *base], "unknown option 'trian.epochs'"),
        ([f"pool={pool_csv}", "--serve", f"port={port}", *base], f"port {port} on 127.0.0.1 is in use"),
        ([f"pool={small}", *base], "batch_size=16 is larger than the pool's 3 unlabeled texts; pass batch_size=3"),
        ([f"pool={small}", f"labeled={labeled_small}", "batch_size=3", *base], "the pool's 2 unlabeled texts"),
        ([f"pool={pool_csv}", "score_sample=8", *base], "score_sample=8 is smaller than batch_size=16"),
    ]


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, pool_csv, capsys):
    busy, cases = bad_inputs(tmp_path, pool_csv)
    with busy:
        for argv, message in cases:
            assert main(argv) == 2, argv
            error = capsys.readouterr().err.strip()
            assert message in error and len(error.splitlines()) == 1, (argv, error)
            assert not (tmp_path / "out").exists(), argv


def test_a_second_loop_on_the_folder_is_refused_and_keeps_its_labels(tmp_path, pool_csv, capsys):
    with ActiveFolder(tmp_path / "al").open() as folder:
        folder.add_label("kept", "neg", "file", 0)
        assert main([f"pool={pool_csv}", LABELS, f"output_dir={folder.path}"]) == 2
        error = capsys.readouterr().err.strip()
        assert "in use by another run" in error and len(error.splitlines()) == 1
        assert folder.labels() == {"kept": "neg"}
        assert "active.json" not in os.listdir(folder.path)  # the refused loop wrote nothing


def test_a_pool_repeating_labeled_texts_asks_each_once_and_says_so(tmp_path, caplog):
    from nlptransfer.active.options import ActiveOptions
    from nlptransfer.active.session import open_loop, read_inputs

    pool = write(tmp_path / "pool.txt", "a b\nc d\na b\ne f\ng h\n")
    labeled = write(tmp_path / "labeled.csv", "text,label\nc d,pos\ne f,neg\n")
    options = ActiveOptions(pool=str(pool), labeled=str(labeled), labels=["neg", "pos"], batch_size=2,
                            output_dir=str(tmp_path / "al"), cold_start="random")
    with caplog.at_level("INFO", logger="nlptransfer"):
        read = read_inputs(options)
        loop = open_loop(options, None, read)
    try:
        assert read.pool == ["a b", "c d", "e f", "g h"]
        assert "the pool repeats 1 texts: each is asked once" in caplog.messages
        assert "pool: 4 texts, 2 of them labeled already (not asked again); 2 labels in all" in caplog.messages
        caplog.clear()
        loop.options.batch_size = 3
        with caplog.at_level("INFO", logger="nlptransfer"):  # a later round with fewer texts left than batch_size
            record = loop.pick(1, read.pool, loop.folder.labels(), None, np.eye(4), None)
        assert sorted(record["picks"]) == ["a b", "g h"]
        assert "round 1: 2 unlabeled texts are left, fewer than batch_size=3: the batch takes them all" in \
            caplog.messages
    finally:
        loop.folder.close()


def test_a_rerun_keeps_its_labels(tmp_path, pool_csv, capsys):
    folder = ActiveFolder(tmp_path / "al").open()
    folder.write_settings({"labels": ["neg", "neu", "pos"], "task": "classification", "pool": str(pool_csv)})
    folder.close()
    assert main([f"output_dir={folder.path}", "labels=[a, b]"]) == 2
    assert "holds a loop with labels=['neg', 'neu', 'pos']" in capsys.readouterr().err
    assert json.loads((folder.path / "active.json").read_text())["labels"] == ["neg", "neu", "pos"]
    assert sorted(os.listdir(folder.path)) == [".nlptransfer.json", "active.json"]


def test_ner_batch_goes_out_and_comes_back_as_conll(tmp_path):
    from nlptransfer.active import ner
    from nlptransfer.active.options import ActiveOptions, label_names
    from nlptransfer.errors import DataError

    tags = label_names(ActiveOptions(task="token-classification", labels=["person", "loc"]))
    assert tags == ["O", "B-person", "I-person", "B-loc", "I-loc"]
    folder = ActiveFolder(tmp_path / "al").open()
    folder.write_batch({"round": 1, "items": [
        {"text": "mary went home", "suggestion": ["B-person", "O", "O"], "confidence": 0.5},
        {"text": "to paris", "suggestion": ["O", "B-loc"], "confidence": 0.6},
        {"text": "bob left", "suggestion": ["B-person", "O"], "confidence": 0.7}]})
    path = ner.write_to_label(folder)
    assert path.read_text().split("\n\n")[0] == "mary\tB-person\t_\nwent\tO\t_\nhome\tO\t_"
    filled = path.read_text().replace("mary\tB-person\t_", "mary\tB-person\t=").replace("went\tO\t_", "went\tO\tO")
    filled = filled.replace("home\tO\t_", "home\tO\tB-loc").replace("to\tO\t_", "to\tO\tO")  # paris left blank
    path.write_text(filled)
    assert ner.read_to_label(folder, tags) == {"mary went home": ["B-person", "O", "B-loc"]}
    path.write_text(filled.replace("bob\tB-person\t_", "bob\tB-person\tB-PER"))
    with pytest.raises(DataError, match=r"to_label.conll:8: tag 'B-PER' is not one of"):
        ner.read_to_label(folder, tags)
    with pytest.raises(DataError, match="'to paris' has 2 words; give one tag for each"):  # the page's tags
        ner.check_tags("to paris", ["O"], tags, "the page's tags")
    with pytest.raises(DataError, match="tag 'B-PER' is not one of"):
        ner.check_tags("to paris", ["O", "B-PER"], tags, "the page's tags")
    folder.close()


def test_ner_is_labeled_in_the_terminal_with_tag_edits(tmp_path):
    """The command with --terminal on an NER loop: numbered words with the suggested tags, edits by number and span,
    Enter takes the tags shown, undo, an unknown type said; the tags land in labels.jsonl, the rest in
    to_label.conll."""
    from nlptransfer.cli.active import active_command

    pool = write(tmp_path / "pool.txt", "mary went to paris\nbob left\nann and tom met\n")
    folder = ActiveFolder(tmp_path / "al").open()
    folder.write_batch({"round": 0, "items": [
        {"text": "mary went to paris", "suggestion": ["B-person", "O", "O", "O"], "confidence": 0.5},
        {"text": "bob left", "suggestion": None, "confidence": None},
        {"text": "ann and tom met", "suggestion": ["O", "O", "O", "O"], "confidence": 0.9}]})
    folder.add_round({"round": 0, "labels": 0, "picks": []})
    folder.close()
    answers = iter(["4 loc", "",  # mary: the suggestion, paris tagged B-loc
                    "1-2 PERSON", "o 2", "",  # bob: a span (B-, I-), the second word back to O
                    "u", "",  # take bob's back, then give it again as shown
                    "3 city", "9 loc", "1 person", "3-4 B-person", "q"])  # ann: a bad type, a bad number; quit
    out = io.StringIO()
    argv = [f"output_dir={folder.path}", f"pool={pool}", "task=token-classification", "labels=[person, loc]",
            "--terminal"]
    assert active_command(argv, ask=lambda prompt: next(answers), out=out) == 0
    assert ActiveFolder(folder.path).labels() == {"mary went to paris": ["B-person", "O", "O", "B-loc"],
                                                  "bob left": ["B-person", "O"]}
    assert [r["label"] for r in ActiveFolder(folder.path).records()][2] is None  # the undo
    shown = out.getvalue()
    assert "    1 mary   B-person" in shown and "    4 paris  B-loc" in shown  # after the edit
    assert "no suggestion yet: every word O" in shown and "    2 left  I-person" in shown
    assert "'city' is not an entity type or tag (person, loc)" in shown and "not an edit: '9 loc'" in shown
    conll = (folder.path / "to_label.conll").read_text()
    assert conll.startswith("ann\tO\t_") and "mary" not in conll


def test_a_round_scores_the_same_seeded_sample_of_the_pool(tmp_path):
    from nlptransfer.active.loop import ActiveLoop
    from nlptransfer.active.options import ActiveOptions

    folder = ActiveFolder(tmp_path / "al").open()
    pool = [f"text {i}" for i in range(100)]
    sampled = ActiveLoop(folder, pool, ["a", "b"], ActiveOptions(score_sample=10)).scored_texts()
    assert len(sampled) == 10 and set(sampled) < set(pool)
    assert ActiveLoop(folder, pool, ["a", "b"], ActiveOptions(score_sample=10)).scored_texts() == sampled
    assert ActiveLoop(folder, pool, ["a", "b"], ActiveOptions()).scored_texts() == pool
    folder.close()


def test_to_label_keeps_texts_with_line_breaks_and_carriage_returns(tmp_path):
    texts = ["one\rtwo, three", "four\nfive", "six\r\nseven \"quoted\""]  # tweets hold a lone \r
    folder = batch_folder(tmp_path, texts)
    path = labeling.write_to_label(folder)
    assert pd.read_csv(path).text.tolist() == texts
    fill(path, dict.fromkeys(texts, "neg"))
    assert labeling.read_to_label(folder, ["neg", "pos"], False) == dict.fromkeys(texts, "neg")
    folder.close()


def test_the_default_strategy_is_frozen_and_the_final_command_trains_on_every_label(tmp_path, reviews_csv,
                                                                                      tiny_model_dir):
    """A session ends with labels.csv and the `nlptransfer.run` command training the final model on it with
    `contrastive`; that command, run as printed (a step of each kind), trains on every label."""
    import shlex

    from nlptransfer.active import final
    from nlptransfer.active.loop import ActiveLoop
    from nlptransfer.active.options import ActiveOptions
    from nlptransfer.cli.run import main as run_main

    assert ActiveOptions().strategy == "frozen"
    truth = dict(pd.read_csv(reviews_csv).values.tolist()) | {"a tweet\rcut by a carriage return, mind": "neg"}
    folder = ActiveFolder(tmp_path / "al").open()
    for text, label in truth.items():
        folder.add_label(text, label, "file", 0)
    loop = ActiveLoop(folder, list(truth), ["neg", "neu", "pos"], ActiveOptions(model=tiny_model_dir))
    said = final.announce(loop)
    folder.close()
    assert pd.read_csv(tmp_path / "al" / "labels.csv").values.tolist() == [list(item) for item in truth.items()]
    command = shlex.split(said.split("with: ", 1)[1])
    assert command[:4] == ["python", "-m", "nlptransfer.run", "recipe=topic"] and "strategy=contrastive" in command
    assert run_main(command[3:] + ["train.epochs=1", "contrastive.epochs=1", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "al-final" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] is not None

    tagged = ActiveFolder(tmp_path / "ner").open()
    tagged.add_label("mary went home", ["B-person", "O", "O"], "file", 0)
    options = ActiveOptions(task="token-classification", labels=["person"], model=tiny_model_dir)
    ner_loop = ActiveLoop(tagged, ["mary went home"], ["O", "B-person", "I-person"], options)
    said = final.announce(ner_loop)
    tagged.close()
    assert (tmp_path / "ner" / "labels.conll").read_text() == "mary\tB-person\nwent\tO\nhome\tO\n"
    assert "recipe=ner task=token-classification" in said and "strategy=full" in said


def test_the_final_command_quotes_label_names_so_commas_and_brackets_stay_in_them():
    from nlptransfer.active.final import quoted
    from nlptransfer.option_values import from_text

    names = ["a, b", "c]d", "it's", "plain"]
    written = f"[{', '.join(quoted(name) for name in names)}]"
    assert from_text(written, list[str], "data.label_names") == names
