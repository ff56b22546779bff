"""``llmgate chat`` in a real terminal (a pty driven by pexpect): streaming, commands, Ctrl-C, errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from llmgate.cli.chat_session import Answer, Session

LLMGATE = str(Path(sys.executable).with_name("llmgate"))
CONFIG = """
storage: {database: "sqlite:///:memory:"}
providers:
  drip: {type: mock, mock: {tokens_per_second: 20}}
  fast: {type: mock}
models:
  - name: quick
    deployments: [{provider: fast, model: echo}]
  - name: slow
    deployments: [{provider: drip, model: mock}]
"""


def spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    config = tmp_path / "llmgate.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "LLMGATE_DATA_DIR": str(tmp_path), "TERM": "xterm"}
    return pexpect.spawn(
        LLMGATE,
        ["chat", "--config", str(config), *args],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 200),
    )


def test_a_session_in_a_real_terminal(tmp_path: Path) -> None:
    child = spawn(tmp_path, "quick")
    try:
        child.expect("llmgate chat")
        child.expect("quick>")
        child.sendline("hello there")  # echoed back by the mock, streamed
        child.expect("hello there\r\n")
        child.expect("quick>")

        child.sendline("/model slow")  # 20 tokens a second: a long answer takes seconds
        child.expect("model: slow")
        child.expect("slow>")
        child.sendline("tell me a story " + "word " * 60)
        child.expect("simulated")  # the answer has started streaming
        child.sendintr()  # Ctrl-C stops the answer, not the program
        child.expect(r"\[stopped\]")
        child.expect("slow>")

        child.sendline("/model nowhere:x")
        child.expect("nowhere:x>")
        child.sendline("hi")
        child.expect("error: The model 'nowhere:x' does not exist")  # one readable line
        child.expect("nowhere:x>")

        child.sendline("/model quick")
        child.expect("quick>")
        child.sendline("still works")
        child.expect("still works\r\n")
        child.expect("quick>")

        child.sendline("/cost")
        child.expect(r"prompt \d+ · completion \d+ tokens · \$0\.000000")
        child.expect("quick>")
        child.sendline(f"/save {tmp_path / 'chat.json'}")
        child.expect("saved 6 messages")
        child.expect("quick>")
        child.sendeof()  # Ctrl-D quits
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    saved = json.loads((tmp_path / "chat.json").read_text())
    roles = [m["role"] for m in saved["messages"]]
    assert roles == ["user", "assistant"] * 3
    texts = [m["content"] for m in saved["messages"]]
    assert texts[0] == "hello there" and texts[-2:] == ["still works", "still works"]
    assert texts[2].startswith("tell me a story")  # the stopped answer stays, as far as it got
    assert texts[3].startswith("[simulated") and len(texts[3]) < 200
    assert "hi" not in texts  # the failed question left the conversation
    assert saved["model"] == "quick"


def test_commands_and_totals() -> None:
    session = Session("m")
    assert session.command("hello") is None
    assert session.command("/system be brief") == "system: be brief"
    assert session.messages() == [{"role": "system", "content": "be brief"}]
    session.turns.append({"role": "user", "content": "q"})
    session.answered(Answer("a", 10, 5, 0.25))
    session.answered(Answer("b", 1, 1, None))
    assert session.command("/cost") == "prompt 11 · completion 6 tokens · $0.250000 (+1 unpriced)"
    assert session.command("/reset") == "conversation cleared"
    assert session.messages() == [{"role": "system", "content": "be brief"}]
    assert session.command("/bogus") == "unknown command /bogus (try /help)"
    assert "Ctrl-C stops an answer" in (session.command("/help") or "")


@pytest.mark.parametrize("path", ["/nonexistent-dir/x.json"])
def test_save_failure_is_one_line(path: str) -> None:
    assert (Session("m").command(f"/save {path}") or "").startswith("cannot save:")
