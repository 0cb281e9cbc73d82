"""streamer/stream/prompt.py: the committed text given to the decoder as its previous context."""

from __future__ import annotations

from streamer.stream.prompt import Prompt
from streamer.stream.tick import Word


def words(*texts: str, closing: bool = False) -> list[Word]:
    """Words in a row; `closing`: the last one ends a Whisper segment (a timestamp token followed it)."""
    return [Word(t, float(i), i + 0.5, 0.9, closing and i == len(texts) - 1) for i, t in enumerate(texts)]


def test_a_clients_initial_context_is_the_prompt_as_given() -> None:
    assert Prompt(200, " Glossary: Kubernetes, nginx.").text == " Glossary: Kubernetes, nginx."
    assert Prompt(200).text == ""


def test_words_of_an_unfinished_sentence_wait_until_it_ends() -> None:
    """A prompt stopping inside a sentence is continued rather than followed."""
    prompt = Prompt(200, " Before.")
    prompt.extend(words(" your", " country", " can", " do", " for"))
    assert prompt.text == " Before."
    prompt.extend(words(" you."))
    assert prompt.text == " Before. your country can do for you."


def test_a_sentence_ends_at_a_full_stop_a_question_or_an_exclamation_mark() -> None:
    for end in (".", "?", "!"):
        prompt = Prompt(200)
        prompt.extend(words(" Ask", f" not{end}", " what"))
        assert prompt.text == f" Ask not{end}", end  # " what" is still open


def test_a_whisper_segment_end_closes_the_text_before_it_without_punctuation() -> None:
    prompt = Prompt(200)
    prompt.extend(words(" and", " so", " my", " fellow", closing=True))
    assert prompt.text == " and so my fellow"
    prompt.extend(words(" Americans"))
    assert prompt.text == " and so my fellow"


def test_the_end_of_an_utterance_closes_what_is_open() -> None:
    prompt = Prompt(200)
    prompt.extend(words(" go", " forward"))
    prompt.extend(words(" ten", " meters"), utterance_ended=True)
    assert prompt.text == " go forward ten meters"
    prompt.extend(words(" stop"))  # nothing of the last utterance was left open
    assert prompt.text == " go forward ten meters"


def test_a_long_prompt_keeps_its_tail_cut_at_a_word_boundary() -> None:
    prompt = Prompt(20, " one two three four five six.")  # 29 characters
    prompt.extend(words(" Seven."))
    # The last 20 characters are "r five six. Seven.": "r" is half a word, so the prompt begins after it.
    assert prompt.text == " five six. Seven."
    assert len(prompt.text) <= 20 and prompt.text.startswith(" ")


def test_a_tail_without_a_word_boundary_is_no_prompt() -> None:
    prompt = Prompt(5)
    prompt.extend(words(" Supercalifragilistic."))
    assert prompt.text == ""


def test_a_prompt_within_its_limit_is_not_cut() -> None:
    prompt = Prompt(17)
    prompt.extend(words(" five", " six.", " Seven."))  # exactly 17 characters
    assert prompt.text == " five six. Seven."


def test_clear_drops_the_text_and_the_open_words() -> None:
    """After a repetition loop the prompt that may have led into it goes, open words too."""
    prompt = Prompt(200, " Initial.")
    prompt.extend(words(" I", " will", " go."))
    prompt.extend(words(" I", " will"))
    prompt.clear()
    assert prompt.text == ""
    prompt.extend(words(" Home."))
    assert prompt.text == " Home."
