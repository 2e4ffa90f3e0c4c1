"""`tuneforge serve`: the official openai client against the server on 127.0.0.1 — chat, streaming chat,
completions, bad requests answered with OpenAI's 4xx error JSON, 16 concurrent clients each getting its own
answer — and the classifier endpoint returning what `predict` returns."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [f"What is code E{i}?" for i in range(16)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen | None = None, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the server did not come up")


@pytest.fixture(scope="module")
def lm_server(shipped_runs):
    """The real command, `tuneforge serve RUN --port P`, in its own process."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "serve", str(shipped_runs["lm"]), "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _in_thread(app):
    """`app` over real HTTP on 127.0.0.1, served by uvicorn in a thread of this process."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def cls_server(shipped_runs):
    """The classifier: the same app (create_app), in this process."""
    from tuneforge.recipes.inference import TunedModel
    from tuneforge.recipes.serve import create_app

    with _in_thread(create_app(TunedModel(shipped_runs["cls"]))) as url:
        yield url


def _client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _post(url: str, path: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_models_chat_stream_and_completions(lm_server, shipped_runs):
    from tuneforge.recipes.inference import predict_run

    client = _client(lm_server)
    assert [m.id for m in client.models.list().data] == ["lm"]
    expected = predict_run(shipped_runs["lm"], texts=["What is code E3?"])[0]["response"]
    chat = client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "What is code E3?"}])
    assert chat.choices[0].message.content == expected and expected  # the training format, greedy by default
    assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.completion_tokens > 0
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="lm", messages=[{"role": "user", "content": "What is code E3?"}], stream=True) if c.choices]
    assert len([p for p in pieces if p]) > 1 and "".join(pieces) == expected  # streamed, same text
    stopped = client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "What is code E3?"}],
                                             stop=["reset"], max_tokens=8)
    assert stopped.choices[0].message.content == expected.split("reset")[0].rstrip()
    assert stopped.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "Hello there"}],
                                           max_tokens=2)
    assert short.usage.completion_tokens <= 2 and short.choices[0].finish_reason == "length"
    sampled = client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "Hello"}],
                                             temperature=1.5, top_p=0.9, seed=7)
    again = client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "Hello"}],
                                           temperature=1.5, top_p=0.9, seed=7)
    assert sampled.choices[0].message.content == again.choices[0].message.content  # seeded sampling repeats
    done = client.completions.create(model="lm", prompt="E3 means", max_tokens=4)
    assert isinstance(done.choices[0].text, str) and done.usage.prompt_tokens > 0
    assert "".join(c.choices[0].text for c in client.completions.create(model="lm", prompt="E3 means", max_tokens=4,
                                                                        stream=True)) == done.choices[0].text


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    ({"model": "lm"}, 400, "messages"),
    ({"model": "lm", "messages": []}, 400, "messages"),
    ({"model": "lm", "messages": [{"role": "wizard", "content": "x"}]}, 400, None),
    ({"model": "lm", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     400, "messages"),
    ({"model": "lm", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, 400, "temperature"),
    ({"model": "lm", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "lm", "messages": [{"role": "user", "content": "x"}], "n": 3}, 400, "n"),
    ({"model": "lm", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8000}, 400, None),  # > context
    (b"[1, 2]", 400, None),
    ({"model": "lm", "messages": [{"role": "user", "content": "\ud800"}]}, 400, "messages"),
    ({"model": "lm", "messages": [{"role": "user", "content": "x"}], "seed": 2**70}, 400, "seed"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ({"model": "lm", "input": "x"}, 400, "model"),  # /v1/classify on a generative run
])
def test_bad_requests_get_openai_error_json(lm_server, body, status, param):
    path = "/v1/classify" if isinstance(body, dict) and "input" in body else "/v1/chat/completions"
    code, reply = _post(lm_server, path, body)
    assert code == status and set(reply["error"]) == {"message", "type", "param", "code"}, reply
    assert reply["error"]["type"] == "invalid_request_error" and "Traceback" not in reply["error"]["message"]
    if param:
        assert (reply["error"]["param"] or "").startswith(param), reply


def test_openai_client_raises_its_own_error_types(lm_server):
    import openai

    client = _client(lm_server)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "x"}], temperature=-1)
    assert urllib.request.urlopen(lm_server + "/health").status == 200
    assert _post(lm_server, "/v1/nothing", {})[0] == 404


def test_sixteen_concurrent_clients_each_get_their_own_answer(lm_server, shipped_runs):
    from tuneforge.recipes.inference import predict_run

    expected = [r["response"] for r in predict_run(shipped_runs["lm"], texts=QUESTIONS)]
    client = _client(lm_server)

    def ask(i: int) -> str:
        kwargs = {"model": "lm", "messages": [{"role": "user", "content": QUESTIONS[i]}]}
        if i % 2:  # half of them stream
            return "".join(c.choices[0].delta.content or "" for c in
                           client.chat.completions.create(stream=True, **kwargs) if c.choices)
        return client.chat.completions.create(**kwargs).choices[0].message.content

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(ask, range(16)))
    assert got == expected and len(set(expected)) > 1  # different questions, each answer its own


def test_classify_endpoint_returns_what_predict_returns(cls_server, shipped_runs):
    from tuneforge.recipes.inference import predict_run

    texts = ["great love it, excellent", "awful broken refund", "it arrived, okay"]
    code, reply = _post(cls_server, "/v1/classify", {"model": "cls", "input": texts})
    assert code == 200
    ours = predict_run(shipped_runs["cls"], texts=texts)
    assert [d["label"] for d in reply["data"]] == [r["label"] for r in ours]
    assert [d["probs"] for d in reply["data"]] == [r["probs"] for r in ours]
    assert _post(cls_server, "/v1/classify", {"model": "cls", "input": "great"})[1]["data"][0]["label"] in \
        {"negative", "neutral", "positive"}
    code, err = _post(cls_server, "/v1/chat/completions", {"model": "cls", "messages": [{"role": "user",
                                                                                        "content": "hi"}]})
    assert code == 400 and "/v1/classify" in err["error"]["message"]
    assert _post(cls_server, "/v1/classify", {"model": "cls", "input": []})[0] == 400


def test_redact_output_removes_pii_from_replies(shipped_runs, monkeypatch):
    from tuneforge.recipes.inference import Reply, TunedModel
    from tuneforge.recipes.serve import create_app

    model = TunedModel(shipped_runs["lm"])
    leak = "Write to carol.canary@example.org or call +44 20 7946 0958."
    monkeypatch.setattr(model, "generate", lambda *a, **k: Reply(leak, "stop", 3, 9))
    monkeypatch.setattr(model, "stream", lambda *a, **k: iter([leak[:20], leak[20:], Reply(leak, "stop", 3, 9)]))
    with _in_thread(create_app(model, redact_output=True)) as url:
        client = _client(url)
        plain = client.chat.completions.create(model="lm", messages=[{"role": "user", "content": "contact?"}])
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="lm", messages=[{"role": "user", "content": "contact?"}], stream=True) if c.choices)
    for text in (plain.choices[0].message.content, streamed):
        assert "carol.canary" not in text and "7946" not in text and "<EMAIL_1>" in text and "<PHONE_1>" in text
