"""Finished Markdown blocks are printed once; only the one being written is redrawn."""

from edgeinf.cli.chat import finished_blocks


def test_paragraph_ends_at_a_blank_line() -> None:
    text = "First paragraph.\n\nSecond, still being wri"
    assert text[finished_blocks(text) :] == "Second, still being wri"


def test_blank_lines_inside_code_do_not_end_a_block() -> None:
    text = "Intro.\n\n```python\ndef f():\n\n    return 1\n"
    assert finished_blocks(text) == len("Intro.\n\n")


def test_a_closed_code_block_is_finished() -> None:
    text = "```python\nx = 1\n```\nafter"
    assert text[finished_blocks(text) :] == "after"


def test_nothing_finished_yet() -> None:
    assert finished_blocks("one line, no end") == 0
