"""Server-Sent Events framing (server/sse.py), read back by a parser that follows the WHATWG
rules, so what the API writes is what an EventSource sees."""

from __future__ import annotations

import orjson
import pytest

from server import sse


def parsed(stream: bytes) -> list[dict[str, str]]:
    """The events an EventSource dispatches from `stream` (WHATWG HTML 9.2.6), with the
    comments and retry fields it saw, in order, as events of their own kinds."""
    seen: list[dict[str, str]] = []
    data: list[str] = []
    fields: dict[str, str] = {}
    text = stream.decode().replace("\r\n", "\n").replace("\r", "\n")
    assert text.endswith("\n"), "a stream's last line must end"
    for line in text.split("\n")[:-1]:
        if not line:
            if data:
                seen.append({**fields, "data": "\n".join(data)})
            data, fields = [], {}
        elif line.startswith(":"):
            seen.append({"comment": line[1:].removeprefix(" ")})
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "retry":
                seen.append({"retry": value})
            else:
                fields[name] = value
    assert not data, "an event left undispatched (no blank line after it)"
    return seen


def test_an_event_carries_its_name_id_and_data() -> None:
    frame = sse.frame(b'{"a":1}', event="product", id="7")
    assert frame == b'event: product\nid: 7\ndata: {"a":1}\n\n'
    assert parsed(frame) == [{"event": "product", "id": "7", "data": '{"a":1}'}]


def test_name_and_id_are_optional() -> None:
    assert sse.frame(b"x") == b"data: x\n\n"


@pytest.mark.parametrize("line_break", [b"\n", b"\r\n", b"\r"])
def test_multi_line_data_is_one_field_per_line_and_arrives_whole(line_break: bytes) -> None:
    data = line_break.join([b"first", b"", b"data: not a field", b"id: 99", b"event: nope"])
    frame = sse.frame(data, event="product", id="1")
    # No line of the data can end the event early or pass for a field of its own.
    assert parsed(frame) == [
        {
            "event": "product",
            "id": "1",
            "data": "first\n\ndata: not a field\nid: 99\nevent: nope",
        }
    ]


def test_data_ending_in_a_line_break_keeps_it() -> None:
    assert parsed(sse.frame(b"x\n")) == [{"data": "x\n"}]


def test_a_product_json_with_line_breaks_in_its_strings_is_one_data_line() -> None:
    body = orjson.dumps({"product_description": "two\nlines\r\nand a \u2028"})
    frame = sse.frame(body, event="product", id="3")
    assert frame.count(b"data: ") == 1
    assert orjson.loads(parsed(frame)[0]["data"]) == orjson.loads(body)


def test_unicode_data_is_sent_as_utf8() -> None:
    body = orjson.dumps({"product_name": "Lampe à poser ✓"})
    assert orjson.loads(parsed(sse.frame(body))[0]["data"])["product_name"] == "Lampe à poser ✓"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "\n"])
def test_a_name_or_id_holding_a_line_break_or_nul_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="no CR, LF or NUL"):
        sse.frame(b"x", event=bad)
    with pytest.raises(ValueError, match="no CR, LF or NUL"):
        sse.frame(b"x", id=bad)


def test_a_keep_alive_is_a_comment_that_dispatches_nothing() -> None:
    assert sse.comment() == b":\n\n"
    assert sse.comment("ping") == b": ping\n\n"
    stream = sse.comment() + sse.frame(b"x", id="1") + sse.comment("ping")
    assert parsed(stream) == [{"comment": ""}, {"id": "1", "data": "x"}, {"comment": "ping"}]
    with pytest.raises(ValueError, match="no CR, LF or NUL"):
        sse.comment("a\nb")


def test_retry_sets_the_reconnection_delay() -> None:
    assert sse.retry(2000) == b"retry: 2000\n\n"
    assert parsed(sse.retry(0)) == [{"retry": "0"}]
    with pytest.raises(ValueError, match="not negative"):
        sse.retry(-1)
