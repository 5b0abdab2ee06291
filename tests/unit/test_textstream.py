"""Streamed text is whole characters, and stop strings never leak, even split across tokens."""

from edgeinf.engine.textstream import TextStream


def test_multibyte_character_split_across_tokens_is_released_whole() -> None:
    data = "héllo 🙂".encode()
    stream = TextStream()
    out = [stream.push(data[i : i + 1]) for i in range(len(data))]
    assert all(part.encode().decode() == part for part in out)
    assert "".join(out) + stream.flush() == "héllo 🙂"
    assert "" in out  # some bytes were held until their character was complete


def test_invalid_bytes_become_replacement_characters() -> None:
    stream = TextStream()
    assert stream.push(b"a\xff") + stream.flush() == "a\ufffd"


def test_stop_string_across_tokens_is_cut_and_never_emitted() -> None:
    stream = TextStream(["\nUser:"])
    emitted = []
    for piece in ["Hi", " there", "\nUs", "er:", " more"]:
        emitted.append(stream.push(piece.encode()))
        if stream.stopped:
            break
    assert emitted == ["Hi", " there", "", ""]
    assert stream.stopped


def test_text_that_only_looks_like_a_stop_prefix_is_released() -> None:
    stream = TextStream(["STOP"])
    assert stream.push(b"ST") == ""
    assert stream.push(b"AR") == "STAR"
    assert not stream.stopped


def test_flush_returns_held_text_when_generation_ends() -> None:
    stream = TextStream(["STOP"])
    assert stream.push(b"x ST") == "x "
    assert stream.flush() == "ST"
