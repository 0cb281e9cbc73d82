"""Whisper's tokenizer on the `tokenizers` library, built from a model's `tokenizer.json`.

The shipped vocabularies stop before the timestamp tokens (and some lack the languages a
newer model knows), so the special tokens after <|endoftext|> are rebuilt here in Whisper's
order: sot, languages, translate, transcribe, startoflm, startofprev, nospeech,
notimestamps, then the 1501 timestamps <|0.00|> … <|30.00|>.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path

from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer

LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip

# Names people type for a language, as well as the codes.
TO_LANGUAGE_CODE: dict[str, str] = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}  # fmt: skip

N_TIMESTAMPS = 1501  # 0.00 … 30.00 s in 20 ms steps
TASKS = ("transcribe", "translate")
# Languages written without spaces between words: word timing splits them per character.
_NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


def normalize_language(language: str | None) -> str | None:
    """A language code from a code or a name ("en", "English"); None stays None."""
    if language is None:
        return None
    key = language.strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(f"unsupported language: {language!r}")


@lru_cache(maxsize=4)
def _load_base(tokenizer_file: str, num_languages: int) -> HFTokenizer:
    spec = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))
    by_content = {t["content"]: t for t in spec["added_tokens"]}
    if "<|endoftext|>" not in by_content:
        raise ValueError(f"{tokenizer_file}: not a Whisper tokenizer (no <|endoftext|>)")
    eot = by_content["<|endoftext|>"]["id"]
    nospeech = "<|nocaptions|>" if "<|nocaptions|>" in by_content else "<|nospeech|>"
    names = [
        "<|endoftext|>", "<|startoftranscript|>",
        *[f"<|{code}|>" for code in list(LANGUAGES)[:num_languages]],
        "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", nospeech, "<|notimestamps|>",
    ]  # fmt: skip
    spec["added_tokens"] = [
        {"id": eot + i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, name in enumerate(names)
    ]  # fmt: skip
    spec["post_processor"] = None  # we place every special token ourselves
    tokenizer = HFTokenizer.from_str(json.dumps(spec))
    tokenizer.add_special_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(N_TIMESTAMPS)])
    return tokenizer


@dataclass(frozen=True)
class Tokenizer:
    """Whisper's tokens for one (language, task); openai/whisper's API."""

    tokenizer: HFTokenizer = field(repr=False)
    multilingual: bool
    num_languages: int
    language: str | None = None
    task: str | None = None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of the tokens, timestamps dropped."""
        return self.tokenizer.decode([t for t in token_ids if t < self.timestamp_begin], skip_special_tokens=False)

    def decode_text(self, token_ids: Sequence[int]) -> str:
        """Text of the text tokens only (no special tokens, no timestamps)."""
        return self.tokenizer.decode([t for t in token_ids if t < self.eot], skip_special_tokens=False)

    def decode_with_timestamps(self, token_ids: Sequence[int]) -> str:
        """Text with timestamps shown as <|1.08|>."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=False)

    def _special(self, text: str) -> int:
        token = self.tokenizer.token_to_id(text)
        if token is None:
            raise KeyError(f"{text} is not in the vocabulary")
        return token

    @cached_property
    def eot(self) -> int:
        return self._special("<|endoftext|>")

    @cached_property
    def sot(self) -> int:
        return self._special("<|startoftranscript|>")

    @cached_property
    def transcribe(self) -> int:
        return self._special("<|transcribe|>")

    @cached_property
    def translate(self) -> int:
        return self._special("<|translate|>")

    @cached_property
    def sot_lm(self) -> int:
        return self._special("<|startoflm|>")

    @cached_property
    def sot_prev(self) -> int:
        return self._special("<|startofprev|>")

    @cached_property
    def no_speech(self) -> int:
        return self.sot_prev + 1

    @cached_property
    def no_timestamps(self) -> int:
        return self._special("<|notimestamps|>")

    @cached_property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    @cached_property
    def language_token(self) -> int:
        if self.language is None:
            raise ValueError("this tokenizer has no language set")
        return self.to_language_token(self.language)

    def to_language_token(self, language: str) -> int:
        token = self.tokenizer.token_to_id(f"<|{language}|>")
        if token is None or token >= self.translate:
            raise KeyError(f"language {language!r} not known to this model")
        return token

    @cached_property
    def all_language_tokens(self) -> tuple[int, ...]:
        return tuple(range(self.sot + 1, self.translate))

    @cached_property
    def all_language_codes(self) -> tuple[str, ...]:
        return tuple(str(self.tokenizer.id_to_token(t)).strip("<|>") for t in self.all_language_tokens)

    @cached_property
    def sot_sequence(self) -> tuple[int, ...]:
        sequence = [self.sot]
        if self.language is not None:
            sequence.append(self.language_token)
        if self.task is not None:
            sequence.append(self.transcribe if self.task == "transcribe" else self.translate)
        return tuple(sequence)

    @cached_property
    def sot_sequence_including_notimestamps(self) -> tuple[int, ...]:
        return (*self.sot_sequence, self.no_timestamps)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Tokens for speaker tags and non-speech annotations, suppressed so the model writes
        no "(music)" or "[laughter]"; " -" and " '" stay allowed at the start of a word."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + list(miscellaneous):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return tuple(sorted(result))

    def split_to_word_tokens(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        if self.language in _NO_SPACE_LANGUAGES:
            return self._split_on_unicode(tokens)
        return self._split_on_spaces(tokens)

    def _split_on_unicode(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        # A token may hold part of a UTF-8 character; cut only where the text is whole.
        full = self.decode_with_timestamps(tokens)
        words: list[str] = []
        word_tokens: list[list[int]] = []
        current: list[int] = []
        offset = 0
        for token in tokens:
            current.append(token)
            decoded = self.decode_with_timestamps(current)
            if "\ufffd" not in decoded or full[offset + decoded.index("\ufffd")] == "\ufffd":
                words.append(decoded)
                word_tokens.append(current)
                current = []
                offset += len(decoded)
        return words, word_tokens

    def _split_on_spaces(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        words: list[str] = []
        word_tokens: list[list[int]] = []
        for subword, sub_tokens in zip(*self._split_on_unicode(tokens)):
            starts_word = sub_tokens[0] >= self.eot or subword.startswith(" ") or subword.strip() in string.punctuation
            if starts_word or not words:
                words.append(subword)
                word_tokens.append(sub_tokens)
            else:
                words[-1] += subword
                word_tokens[-1].extend(sub_tokens)
        return words, word_tokens


@cache
def get_tokenizer(
    tokenizer_file: Path | str,
    *,
    multilingual: bool,
    num_languages: int = 99,
    language: str | None = None,
    task: str | None = None,
) -> Tokenizer:
    """The tokenizer of a model for one language and task (English-only models: always en)."""
    language = normalize_language(language)
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if multilingual:
        task = task or "transcribe"
    else:
        language, task = None, None
    base = _load_base(str(tokenizer_file), num_languages)
    return Tokenizer(base, multilingual, num_languages, language, task)
