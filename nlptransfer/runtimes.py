"""Serving runtimes for `predict` (`runtime=`): the exact fp32 torch model, the default, and faster approximate
ones on CPU, each a `Runtime` registered by name.

| runtime | what runs | needs |
|---|---|---|
| `torch` | the saved fp32 weights in torch: exactly what the run evaluated | nothing |
| `bf16` | torch, the weights cast to bfloat16 as the model loads | to be fast: a GPU, or AMX/AVX-512 BF16 |
| `int8` | torch, each `nn.Linear` quantized to int8 as the model loads (dynamic, per channel) | nothing |
| `onnx` | onnxruntime on the fp32 graph exported by `export` | `onnx/model.onnx` |
| `onnx-int8` | onnxruntime on that graph with int8 weights (`quantize_dynamic`, per channel) | `onnx/model_int8.onnx` |

Dynamic quantization: weights int8 per output channel, each batch's activations quantized on the fly.

`int8` is applied at load time rather than saved: quantizing takes well under a second, and torch's quantized
modules save only as pickles (`torch.save`), which predict never loads (a pickle can run code); transformers'
`save_pretrained` cannot write them. torch marks its quantized tensors deprecated (pytorch issue 184982); the
ONNX variant is the durable int8 path. torchao's int8 (its successor) needs `torch.compile` for speed on CPU.

`export` writes the ONNX files into `onnx/` beside the model's weights (removing those of an earlier export), then
`onnx/export.json` (last) with the sha256 of the weights they came from and of each file it wrote: a folder whose
weights changed since, or a file that export did not write, is refused, never served stale.
Optimum is not used: optimum-onnx 0.1.0 requires transformers<4.58 and nlptransfer runs on 5.x; torch.onnx's
exporter (dynamo, with onnxscript) and onnxruntime's quantizer do the same job here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, ModelError
from .outputs.files import write_bytes, write_json
from .outputs.model_files import first_line

if TYPE_CHECKING:  # torch loads when a model is prepared, opened or exported, not with predict's --help
    from torch import nn

    from .engine.onnx_model import OnnxModel

EXPORT_FOLDER = "onnx"
EXPORT_RECORD = "export.json"
INSTALL = "pip install 'nlptransfer[serve]'"


@dataclass(frozen=True)
class Runtime:
    """How predict runs a model: the torch model as loaded (`prepare`), or a file written by `export` (`open`)."""

    name: str
    summary: str
    file: str | None = None
    """The exported file it runs, in the model folder; None: it runs the torch model."""
    gpu: bool = False
    """Runs on a GPU when there is one (int8 and onnxruntime's CPU provider run on the CPU)."""

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def open(self, model_dir: Path) -> OnnxModel:
        raise NotImplementedError


class BF16(Runtime):
    def prepare(self, model: nn.Module) -> nn.Module:
        import torch

        return model.to(torch.bfloat16)  # scores come back as float32 (the tasks read logits.float())


class Int8(Runtime):
    def prepare(self, model: nn.Module) -> nn.Module:
        return quantize_int8(model)


class Onnx(Runtime):
    def open(self, model_dir: Path) -> OnnxModel:
        """The exported graph in an onnxruntime session, with the model's config (labels, problem type)."""
        from .engine.onnx_model import OnnxModel
        from .models import saved_config

        ort = require("onnxruntime", f"runtime={self.name}")
        path = model_dir / self.file
        check_export(model_dir, self)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its graph-optimizer notes are not the user's business
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            config = saved_config(model_dir)  # a pooled model's by the installed class, never the folder's
        except (OSError, ValueError, RuntimeError) as e:  # onnxruntime's load failures are RuntimeErrors
            raise ModelError(f"cannot load {path}: {first_line(e)}; export it again: {export_command(model_dir, self)}"
                             ) from None
        return OnnxModel(session, config)


REGISTRY = {runtime.name: runtime for runtime in (
    Runtime("torch", "the saved fp32 weights in torch, exactly as the run evaluated them (default)", gpu=True),
    BF16("bf16", "torch in bfloat16 (approximate; fast on GPUs and CPUs with AMX or AVX-512 BF16, slow elsewhere)",
         gpu=True),
    Int8("int8", "torch with int8 linear layers, quantized as the model loads (approximate, CPU)"),
    Onnx("onnx", "onnxruntime on the exported fp32 graph (CPU)", f"{EXPORT_FOLDER}/model.onnx"),
    Onnx("onnx-int8", "onnxruntime on the exported graph with int8 weights (approximate, CPU)",
         f"{EXPORT_FOLDER}/model_int8.onnx"),
)}
EXPORTED = [name for name, runtime in REGISTRY.items() if runtime.file]


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Runtime:
    if name not in REGISTRY:
        raise ConfigError(f"unknown runtime '{name}'; pass one of {', '.join(REGISTRY)} (runtime=torch is exact)")
    return REGISTRY[name]


def require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs {module}, which is not installed; {INSTALL}") from None


def quantize_int8(model: nn.Module) -> nn.Module:
    """Every `nn.Linear` of `model` as a dynamically quantized int8 one, in place (weights per output channel:
    per-tensor weights lost more accuracy on the sentiment model, see benchmarks/PREDICT.md)."""
    import torch
    from torch import nn
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of quantized tensors, once per layer
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def weights_digest(model_dir: Path) -> str:
    """sha256 over the folder's safetensors files (name and content), which the export came from."""
    digest = hashlib.sha256()
    for weights in sorted(model_dir.glob("*.safetensors")):
        digest.update(weights.name.encode())
        digest.update(bytes.fromhex(file_digest(weights)))
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def export_record(model_dir: Path) -> dict:
    """`onnx/export.json`: the weights' sha256 and each exported file's own ({} when missing or unreadable)."""
    try:
        record = json.loads((model_dir / EXPORT_FOLDER / EXPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else {}


def export_command(model_dir: Path, runtime: Runtime) -> str:
    return f"python -m nlptransfer.export model={model_dir} formats={runtime.name}"


def check_export(model_dir: Path, runtime: Runtime) -> None:
    """Refuse a folder without the runtime's file, a file that the last export did not write (one left by an
    earlier export), and a folder whose weights changed after the export: every exported file is checked."""
    path = model_dir / runtime.file
    if not path.is_file():
        raise ModelError(f"runtime={runtime.name} needs {path}, which this model folder lacks; export it first: "
                         f"{export_command(model_dir, runtime)} (or predict with runtime=torch)")
    record = export_record(model_dir)
    if record.get("files", {}).get(runtime.file) != file_digest(path) \
            or record.get("weights_sha256") != weights_digest(model_dir):
        raise ModelError(f"{path} was exported from other weights than {model_dir} holds now; export it again: "
                         f"{export_command(model_dir, runtime)}")


def check_formats(formats: list[str]) -> list[str]:
    """The export formats, checked: each an exported runtime; `int8` needs no export."""
    if not formats:
        raise ConfigError(f"formats= is empty; pass {','.join(EXPORTED)}")
    for name in formats:
        if name == "int8":
            raise ConfigError("int8 needs no export: predict with runtime=int8 quantizes the torch model as it "
                              f"loads; export formats are {', '.join(EXPORTED)}")
        if name not in EXPORTED:
            raise ConfigError(f"unknown export format '{name}'; pass one or more of {', '.join(EXPORTED)}, "
                              "comma-separated")
    return list(dict.fromkeys(formats))


def export(model: nn.Module, tokenizer, model_dir: Path, formats: list[str]) -> list[Path]:
    """Write the ONNX files of `formats` into `model_dir/onnx/` (each atomically; `onnx-int8` also writes the
    fp32 graph it quantizes), then `export.json`; returns the files written."""
    formats = check_formats(formats)
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "export")
    folder = model_dir / EXPORT_FOLDER
    (folder / EXPORT_RECORD).unlink(missing_ok=True)  # first: an export that fails halfway leaves no file servable
    for name in EXPORTED:  # a file of an earlier export that this one does not write again would be stale
        (model_dir / REGISTRY[name].file).unlink(missing_ok=True)
    fp32 = model_dir / REGISTRY["onnx"].file
    write_bytes(fp32, onnx_graph(model.eval(), tokenizer))
    written = [fp32]
    if "onnx-int8" in formats:
        written.append(model_dir / REGISTRY["onnx-int8"].file)
        write_bytes(written[-1], quantized_graph(fp32, folder))
    import onnxruntime
    import torch

    write_json(folder / EXPORT_RECORD, {"weights_sha256": weights_digest(model_dir),
                                        "files": {path.relative_to(model_dir).as_posix(): file_digest(path)
                                                  for path in written},
                                        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__})
    return written


def onnx_graph(model: nn.Module, tokenizer) -> bytes:
    """The model as an ONNX graph (inputs: the tokenizer's, output: `logits`; batch and sequence dynamic)."""
    import torch

    sample = dict(tokenizer(["a sample text of a few words", "a short one"], padding=True, return_tensors="pt"))
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (), kwargs={name: sample[name] for name in names}, input_names=names,
                                        output_names=["logits"], dynamic_shapes={name: {0: batch, 1: sequence}
                                                                                 for name in names},
                                        dynamo=True, verbose=False)
    except Exception as e:  # the exporter raises its own error types for unsupported operators
        raise ModelError(f"torch.onnx cannot export this model: {first_line(e)}; predict with runtime=torch "
                         "or runtime=int8") from None
    finally:
        exporter_log.setLevel(level)
    return program.model_proto.SerializeToString()


def quantized_graph(fp32: Path, folder: Path) -> bytes:
    """onnxruntime's dynamic int8 quantization of the graph at `fp32` (weights per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=folder, prefix=".quantize-") as scratch:
        output = Path(scratch) / "model_int8.onnx"
        root = logging.getLogger()
        advice = NoAdvice()  # it logs advice to pre-process the graph on the root logger, for image models
        root.addFilter(advice)
        try:
            quantize_dynamic(fp32, output, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.removeFilter(advice)
        return output.read_bytes()


class NoAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
