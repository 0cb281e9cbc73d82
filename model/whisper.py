"""The Whisper encoder-decoder network, with an explicit key/value cache.

Parameter names follow OpenAI's checkpoints (`encoder.blocks.0.attn.query.weight`, …), so an
OpenAI state dict loads as it is; other formats are mapped to these names in `weights.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ModelDims


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """The encoder's fixed positional embedding (numpy: cheap even under a meta-device context)."""
    log_timescale_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = np.exp(-log_timescale_increment * np.arange(channels // 2))
    scaled_time = np.arange(length)[:, None] * inv_timescales[None, :]
    return torch.from_numpy(np.concatenate([np.sin(scaled_time), np.cos(scaled_time)], axis=1).astype(np.float32))


SHORT_QUERY = 16  # query rows up to which CPU bfloat16 attention is computed by hand (see `attend`)


class MultiHeadAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_head, -1).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, -1)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.split_heads(self.key(x)), self.split_heads(self.value(x))

    def attend(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        q = self.split_heads(self.query(x))
        if mask is None and q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.shape[-2] <= SHORT_QUERY:
            # A decoding step's few query rows against the 1500 audio frames: the CPU's bfloat16
            # SDPA kernel takes 4x longer than the plain product (softmax kept in float32).
            scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
            attended = torch.softmax(scores, dim=-1).to(v.dtype) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(self.merge_heads(attended))

    def weights(self, x: Tensor, k: Tensor) -> Tensor:
        """Softmax attention weights [B, H, T, S] (for word alignment; float32)."""
        q = self.split_heads(self.query(x)).float()
        return torch.softmax(q @ k.float().transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        self.cross_attn = MultiHeadAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = nn.LayerNorm(n_state) if cross_attention else None
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = nn.LayerNorm(n_state)

    def forward_encoder(self, x: Tensor) -> Tensor:
        h = self.attn_ln(x)
        k, v = self.attn.keys_values(h)
        x = x + self.attn.attend(h, k, v)
        return x + self.mlp(self.mlp_ln(x))

    def cross_attention(self) -> tuple[nn.LayerNorm, MultiHeadAttention]:
        """A decoder block's cross-attention layer norm and attention (encoder blocks have none)."""
        if self.cross_attn is None or self.cross_attn_ln is None:
            raise TypeError("an encoder block has no cross-attention")
        return self.cross_attn_ln, self.cross_attn


class AudioEncoder(nn.Module):
    positional_embedding: Tensor  # a buffer: nn.Module's __getattr__ types it as Tensor | Module

    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dims.n_mels, dims.n_audio_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.n_audio_state, dims.n_audio_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(dims.n_audio_ctx, dims.n_audio_state))
        self.blocks: Sequence[ResidualAttentionBlock] = nn.ModuleList(  # type: ignore[assignment]
            ResidualAttentionBlock(dims.n_audio_state, dims.n_audio_head) for _ in range(dims.n_audio_layer)
        )
        self.ln_post = nn.LayerNorm(dims.n_audio_state)

    def forward(self, mel: Tensor) -> Tensor:
        """Features [B, frames // 2, d] of mel windows [B, n_mels, frames]: a whole window is
        2 * n_audio_ctx frames (30 s); a shorter one takes the first positions (see
        `transcribe.encoder_frames` for what the decoder then needs after the audio)."""
        frames, most = mel.shape[-1], 2 * self.positional_embedding.shape[0]
        if frames % 2 or not 0 < frames <= most:
            raise ValueError(f"expected an even number of mel frames up to {most}, got {frames}")
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        for block in self.blocks:
            x = block.forward_encoder(x)
        return self.ln_post(x)


@dataclass(frozen=True, eq=False)
class EncodedAudio:
    """Encoded windows as the decoder reads them: each decoder layer's cross-attention keys and
    values [B, n_head, positions, d_head] (n_audio_ctx positions for a whole 30 s window). Made once per batch of windows (`Whisper.encode`),
    so that language detection, a decode at each temperature and the alignment pass share them
    (computing them is about a sixth of an encoder pass)."""

    cross: tuple[tuple[Tensor, Tensor], ...]

    def __len__(self) -> int:
        return self.cross[0][0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.cross[0][0].device

    def select(self, rows: Sequence[int]) -> EncodedAudio:
        """These rows of the batch (itself when that is all of them, in order: no copy)."""
        if list(rows) == list(range(len(self))):
            return self
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        return EncodedAudio(tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross))


class KVCache:
    """Keys and values of one batch being decoded.

    Cross-attention keys/values come from the audio features once. Self-attention
    keys/values grow by the tokens fed to `Whisper.logits`; they live in buffers with
    spare room so a decoding step writes in place instead of concatenating.
    Rows may start with left padding (`pad_lengths`): padded keys are masked and positions
    shifted, so each row decodes exactly as it would alone.
    """

    def __init__(self, cross: list[tuple[Tensor, Tensor]], pad_lengths: Tensor | None) -> None:
        self.cross = cross
        self.self_kv: list[tuple[Tensor, Tensor]] = []
        self.length = 0
        self.pad_lengths = pad_lengths if pad_lengths is not None and bool(pad_lengths.any()) else None

    @property
    def batch_size(self) -> int:
        return self.cross[0][0].shape[0]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Stores the new keys/values of `layer` after the cached ones; returns all of them."""
        new = k.shape[2]
        if layer == len(self.self_kv):
            capacity = max(self.length + new + 64, 2 * (self.length + new))
            shape = (k.shape[0], k.shape[1], capacity, k.shape[3])
            self.self_kv.append((k.new_empty(shape), v.new_empty(shape)))
        keys, values = self.self_kv[layer]
        end = self.length + new
        if end > keys.shape[2]:
            capacity = 2 * end
            keys = torch.cat([keys[:, :, : self.length], k.new_empty(*keys.shape[:2], capacity - self.length, keys.shape[3])], 2)
            values = torch.cat([values[:, :, : self.length], v.new_empty(*values.shape[:2], capacity - self.length, values.shape[3])], 2)
            self.self_kv[layer] = (keys, values)
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]

    def reorder(self, index: Tensor) -> None:
        """Keeps (or repeats) rows `index` of the batch: beam search, finished rows dropped."""
        index = index.to(self.cross[0][0].device)
        # Layer by layer, so each old layer can be freed before the next is copied (when the
        # cache alone held it): the cross keys/values are large.
        for kv in (self.cross, self.self_kv):
            for layer, (k, v) in enumerate(kv):
                kv[layer] = (k.index_select(0, index), v.index_select(0, index))
        if self.pad_lengths is not None:
            self.pad_lengths = self.pad_lengths.index_select(0, index.to(self.pad_lengths.device))


class TextDecoder(nn.Module):
    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(dims.n_vocab, dims.n_text_state)
        self.positional_embedding = nn.Parameter(torch.empty(dims.n_text_ctx, dims.n_text_state))
        self.blocks: Sequence[ResidualAttentionBlock] = nn.ModuleList(  # type: ignore[assignment]
            ResidualAttentionBlock(dims.n_text_state, dims.n_text_head, cross_attention=True)
            for _ in range(dims.n_text_layer)
        )
        self.ln = nn.LayerNorm(dims.n_text_state)

    def embed(self, tokens: Tensor, cache: KVCache) -> tuple[Tensor, Tensor | None]:
        """Token + position embeddings of the new tokens, and the self-attention mask."""
        _batch, new = tokens.shape
        start = cache.length
        positions = torch.arange(start, start + new, device=tokens.device)
        mask = None
        if cache.pad_lengths is not None:
            pad = cache.pad_lengths.to(tokens.device)[:, None]
            row_positions = (positions[None, :] - pad).clamp(min=0)
            x = self.token_embedding(tokens) + self.positional_embedding[row_positions]
            keys = torch.arange(start + new, device=tokens.device)
            allowed = (keys[None, None, :] >= pad[:, :, None]) & (keys[None, None, :] <= positions[None, :, None])
            # A padded query attends to itself, so no row of the mask is empty (empty rows give NaN).
            allowed |= keys[None, None, :] == positions[None, :, None]
            mask = allowed[:, None]
        else:
            x = self.token_embedding(tokens) + self.positional_embedding[positions]
            if new > 1:
                keys = torch.arange(start + new, device=tokens.device)
                mask = keys[None, :] <= positions[:, None]
        return x.to(self.positional_embedding.dtype), mask

    def forward(self, tokens: Tensor, cache: KVCache) -> Tensor:
        """Hidden states after the final layer norm, for the new tokens."""
        return self.forward_weighed(tokens, cache, ())[0]

    def forward_weighed(self, tokens: Tensor, cache: KVCache, layers: Collection[int]) -> tuple[Tensor, dict[int, Tensor]]:
        """`forward`, and the cross-attention weights [B, H, T, S] of `layers` (float32)."""
        x, mask = self.embed(tokens, cache)
        weights: dict[int, Tensor] = {}
        for layer, block in enumerate(self.blocks):
            h = block.attn_ln(x)
            k, v = cache.append(layer, *block.attn.keys_values(h))
            x = x + block.attn.attend(h, k, v, mask)
            cross_ln, cross_attn = block.cross_attention()
            h = cross_ln(x)
            if layer in layers:
                weights[layer] = cross_attn.weights(h, cache.cross[layer][0])
            x = x + cross_attn.attend(h, *cache.cross[layer])
            x = x + block.mlp(block.mlp_ln(x))
        cache.length += tokens.shape[1]
        return self.ln(x), weights


class Whisper(nn.Module):
    CPU_ENCODER_BATCH = 1
    alignment_heads: Tensor  # a buffer: [K, 2] (layer, head)

    def __init__(self, dims: ModelDims, alignment_heads: Sequence[tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(dims)
        self.decoder = TextDecoder(dims)
        self.register_buffer("alignment_heads", self.alignment_heads_tensor(dims, alignment_heads), persistent=False)
        # A separate output layer only when it must differ from the tied embedding (int8).
        self.output_projection: nn.Module | None = None
        self.tokenizer_file: Path | None = None
        self.name = "whisper"
        self.decoder_passes = 0  # decoder runs (`logits`, `alignment_pass`): the profile counts them

    @staticmethod
    def alignment_heads_tensor(dims: ModelDims, heads: Sequence[tuple[int, int]] | None) -> Tensor:
        """[K, 2] (layer, head); without a known list, every head of the last half of the layers."""
        if not heads:
            half = dims.n_text_layer // 2
            heads = [(layer, head) for layer in range(half, dims.n_text_layer) for head in range(dims.n_text_head)]
        return torch.tensor(heads, dtype=torch.long, device="cpu").reshape(-1, 2)

    @property
    def device(self) -> torch.device:
        return self.decoder.positional_embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.positional_embedding.dtype

    @property
    def is_multilingual(self) -> bool:
        return self.dims.is_multilingual

    @property
    def num_languages(self) -> int:
        return self.dims.num_languages

    def embed_audio(self, mel: Tensor) -> Tensor:
        """Audio features [B, frames // 2, d] of mel windows [B, n_mels, frames] (3000: 30 s).

        On the CPU the windows go through in chunks: a bigger batch is no faster there, and
        the encoder's activations (about 40 MB a window for tiny) would grow with it.
        """
        mel = mel.to(device=self.device, dtype=self.dtype)
        chunk = self.CPU_ENCODER_BATCH if self.device.type == "cpu" else mel.shape[0]
        return torch.cat([self.encoder(part) for part in mel.split(max(chunk, 1))])

    def encode(self, mel: Tensor) -> EncodedAudio:
        """Mel windows [B, n_mels, frames] through the encoder, then into every decoder layer's
        cross-attention keys and values."""
        features = self.embed_audio(mel)
        return EncodedAudio(tuple(block.cross_attention()[1].keys_values(features) for block in self.decoder.blocks))

    def new_cache(self, audio: EncodedAudio, pad_lengths: Tensor | None = None) -> KVCache:
        return KVCache(list(audio.cross), pad_lengths)

    def project(self, hidden: Tensor) -> Tensor:
        """Vocabulary logits (float32) of decoder hidden states; the output layer is tied to the embedding."""
        if self.output_projection is not None:
            return self.output_projection(hidden).float()
        # Computed as W @ hᵀ: with the few rows of a decoding step, BLAS streams the
        # [vocab, d] matrix once for all rows this way (2-4x faster on the CPU than h @ Wᵀ);
        # a single row is paired with a zero row, since the matrix-vector path is slower still.
        rows = hidden.reshape(-1, hidden.shape[-1])
        n = rows.shape[0]
        if n == 1:
            rows = torch.cat([rows, torch.zeros_like(rows)])
        logits = (self.decoder.token_embedding.weight @ rows.T).T[:n]
        return logits.float().contiguous().view(*hidden.shape[:-1], -1)

    def logits(self, tokens: Tensor, cache: KVCache, positions: Sequence[int] | None = None) -> Tensor:
        """Feeds `tokens` [B, T] after those already in `cache`; logits [B, T, n_vocab] (float32).

        `positions` picks which of the T new tokens to project onto the vocabulary (the
        projection is the costliest step on long prompts); None means all.
        """
        self.decoder_passes += 1
        hidden = self.decoder(tokens.to(self.device), cache)
        if positions is not None:
            hidden = hidden[:, list(positions)]
        return self.project(hidden)

    def alignment_pass(self, tokens: Tensor, audio: EncodedAudio) -> tuple[Tensor, Tensor]:
        """One pass over whole sequences `tokens` [B, T]: the cross-attention weights
        [B, K, T, n_audio_ctx] of the K alignment heads (float32), and the logits [B, T, n_vocab]."""
        self.decoder_passes += 1
        heads = self.alignment_heads.tolist()
        hidden, weights = self.decoder.forward_weighed(tokens.to(self.device), self.new_cache(audio), {layer for layer, _ in heads})
        return torch.stack([weights[layer][:, head] for layer, head in heads], dim=1), self.project(hidden)

    def forward(self, mel: Tensor, tokens: Tensor) -> Tensor:
        return self.logits(tokens, self.new_cache(self.encode(mel)))
