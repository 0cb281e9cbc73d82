"""Low precision against float32: does the model decode the same tokens?

    python -m benchmarks.precision [--model tiny.en] [--device auto] [--dtype auto] [--kinds short,long,multilingual]

Transcribes every shared clip of the given kinds (`model.transcribe`, greedy, word timestamps
off) once in float32 and once in `--dtype` (auto: float16 on CUDA, bfloat16 on a CPU that has it
natively) on the same device, and prints per clip whether the tokens are identical, and the share
of clips that are. Exit status 0 when at least `--bar` (default 0.99) of them are.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from benchmarks.data import clips_of
from model.audio import load_audio
from model.runtime import cpu_has_native_bfloat16
from model.transcribe import WindowOptions, transcribe
from model.weights import default_device, load_model


def tokens_of(model, audio, language: str | None) -> list[int]:
    options = WindowOptions(language=language if model.is_multilingual else None)
    return [t for segment in transcribe(model, audio, options).segments for t in segment.tokens]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--kinds", default="short,long")
    parser.add_argument("--bar", type=float, default=0.99)
    args = parser.parse_args(argv)
    device = default_device() if args.device == "auto" else args.device
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else ("bfloat16" if cpu_has_native_bfloat16() else "float32")
    reference = load_model(args.model, device=device, dtype="float32")
    low = load_model(args.model, device=device, dtype=dtype)
    clips = [c for kind in args.kinds.split(",") for c in clips_of(kind)]
    if not reference.is_multilingual:
        clips = [c for c in clips if c.language == "en"]
    same = 0
    began = time.perf_counter()
    with torch.inference_mode():
        for clip in clips:
            audio = load_audio(clip.path)
            exact, approximate = tokens_of(reference, audio, clip.language), tokens_of(low, audio, clip.language)
            equal = exact == approximate
            same += equal
            print(f"{clip.id:<32} {len(exact):4d} tokens  {'same' if equal else 'DIFFERENT'}", flush=True)
    share = same / max(len(clips), 1)
    print(f"{args.model} on {device}: {dtype} tokens equal to float32 on {same}/{len(clips)} clips ({share:.1%}; bar {args.bar:.0%}) in {time.perf_counter() - began:.0f} s")
    return 0 if share >= args.bar else 1


if __name__ == "__main__":
    sys.exit(main())
