"""Converts a Whisper checkpoint between formats.

    python -m model.convert SRC DST --to hf|openai

SRC is anything `load_model` reads (a short name such as tiny.en, a CTranslate2 or Hugging
Face directory, an OpenAI .pt file). `--to hf` writes a Hugging Face directory
(config.json, generation_config.json, model.safetensors, tokenizer.json); `--to openai`
writes an OpenAI checkpoint file ({"dims", "model_state_dict", "alignment_heads"}).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import torch

from model.weights import Checkpoint, load_checkpoint

# OpenAI name pattern → Hugging Face name pattern (the inverse of weights._HF_TO_OPENAI).
_OPENAI_TO_HF = [
    (r"^encoder\.positional_embedding$", "model.encoder.embed_positions.weight"),
    (r"^decoder\.positional_embedding$", "model.decoder.embed_positions.weight"),
    (r"^decoder\.token_embedding\.", "model.decoder.embed_tokens."),
    (r"^encoder\.conv(\d)\.", r"model.encoder.conv\1."),
    (r"^encoder\.ln_post\.", "model.encoder.layer_norm."),
    (r"^decoder\.ln\.", "model.decoder.layer_norm."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.", r"model.\1.layers.\2."),
    (r"\.attn\.query\.", ".self_attn.q_proj."),
    (r"\.attn\.key\.", ".self_attn.k_proj."),
    (r"\.attn\.value\.", ".self_attn.v_proj."),
    (r"\.attn\.out\.", ".self_attn.out_proj."),
    (r"\.attn_ln\.", ".self_attn_layer_norm."),
    (r"\.cross_attn\.query\.", ".encoder_attn.q_proj."),
    (r"\.cross_attn\.key\.", ".encoder_attn.k_proj."),
    (r"\.cross_attn\.value\.", ".encoder_attn.v_proj."),
    (r"\.cross_attn\.out\.", ".encoder_attn.out_proj."),
    (r"\.cross_attn_ln\.", ".encoder_attn_layer_norm."),
    (r"\.mlp\.0\.", ".fc1."),
    (r"\.mlp\.2\.", ".fc2."),
    (r"\.mlp_ln\.", ".final_layer_norm."),
]


def openai_to_hf_name(name: str) -> str:
    for pattern, replacement in _OPENAI_TO_HF:
        name = re.sub(pattern, replacement, name)
    return name


def to_hf_state_dict(checkpoint: Checkpoint) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json contents, state dict) of the checkpoint in Hugging Face's layout."""
    sd = {openai_to_hf_name(k): v.contiguous() for k, v in checkpoint.state_dict.items()}
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    dims = checkpoint.dims
    specials_start = 50257 if dims.is_multilingual else 50256  # <|endoftext|>
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        **dims.to_hf_config(),
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "pad_token_id": specials_start,
        "bos_token_id": specials_start,
        "eos_token_id": specials_start,
        "decoder_start_token_id": specials_start + 1,
        "begin_suppress_tokens": [220, specials_start],
        "torch_dtype": "float32",
    }
    return config, sd


def write_hf(checkpoint: Checkpoint, directory: Path) -> None:
    from safetensors.torch import save_file

    config, sd = to_hf_state_dict(checkpoint)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    generation = {"alignment_heads": [list(h) for h in checkpoint.alignment_heads], "is_multilingual": checkpoint.dims.is_multilingual}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2))
    sd.pop("proj_out.weight")  # tied to the token embedding; safetensors refuses shared tensors
    save_file(sd, str(directory / "model.safetensors"))
    if checkpoint.tokenizer_file is not None:
        shutil.copyfile(checkpoint.tokenizer_file, directory / "tokenizer.json")


def write_openai(checkpoint: Checkpoint, path: Path) -> None:
    dims = checkpoint.dims
    heads = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
    for layer, head in checkpoint.alignment_heads:
        heads[layer, head] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint.state_dict.items()}
    torch.save({"dims": dims.to_dict(), "model_state_dict": sd, "alignment_heads": heads}, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="model name or path (CTranslate2, Hugging Face or OpenAI)")
    parser.add_argument("dst", type=Path, help="output directory (hf) or .pt file (openai)")
    parser.add_argument("--to", choices=("hf", "openai"), required=True)
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.src)
    if args.to == "hf":
        write_hf(checkpoint, args.dst)
    else:
        write_openai(checkpoint, args.dst)
    print(f"wrote {args.dst} ({args.to}) from {args.src}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
