"""The shape of a Whisper network."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelDims:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelDims.{name} must be a positive int, got {value!r}")
        if self.n_audio_state % self.n_audio_head or self.n_text_state % self.n_text_head:
            raise ValueError("state sizes must be divisible by the number of heads")

    @property
    def is_multilingual(self) -> bool:
        return self.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        # 51865 = 99 languages (tiny..large-v2); each extra vocabulary entry is one more language.
        return self.n_vocab - 51765 - int(self.is_multilingual)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    # Hugging Face's WhisperConfig names for the same numbers.
    def to_hf_config(self) -> dict[str, Any]:
        return {
            "num_mel_bins": self.n_mels,
            "max_source_positions": self.n_audio_ctx,
            "d_model": self.n_audio_state,
            "encoder_attention_heads": self.n_audio_head,
            "encoder_layers": self.n_audio_layer,
            "vocab_size": self.n_vocab,
            "max_target_positions": self.n_text_ctx,
            "decoder_attention_heads": self.n_text_head,
            "decoder_layers": self.n_text_layer,
            "encoder_ffn_dim": 4 * self.n_audio_state,
            "decoder_ffn_dim": 4 * self.n_text_state,
        }

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> ModelDims:
        return cls(
            n_mels=config["num_mel_bins"],
            n_audio_ctx=config["max_source_positions"],
            n_audio_state=config["d_model"],
            n_audio_head=config["encoder_attention_heads"],
            n_audio_layer=config["encoder_layers"],
            n_vocab=config["vocab_size"],
            n_text_ctx=config["max_target_positions"],
            n_text_state=config["d_model"],
            n_text_head=config["decoder_attention_heads"],
            n_text_layer=config["decoder_layers"],
        )
