#!/usr/bin/env python3
"""Drives `fourd serve` with the official `openai` Python package and reports what works.

Starts the server itself (on a free port, parsed from its `serving NAME at http://HOST:PORT/v1`
line on stderr), runs the checks below against it, stops it with SIGTERM and expects exit 0, then
restarts it with `--api-key` for the key checks. One line per check: name, PASS/FAIL, detail;
the exit status is 1 when any check fails.

 1. models        `client.models.list()` lists the served model (the checkpoint folder's name).
 2. chat          greedy (temperature 0, max_tokens 16): string content, finish_reason, usage
                  that adds up; the `fourd` extension in `resp.model_extra` / `resp.to_dict()`;
                  `choices[0].message.latent_segments` likewise.
 3. determinism   the same greedy request twice gives the same text.
 4. stream        `stream=True` with `stream_options={"include_usage": True}`: the deltas
                  concatenate to check 2's text; the last chunk carries the usage.
 5. media         an `image_url` data URL (PNG); a `video` part (4 frame data URLs, fps 2);
                  a `video_url` data URL of a tiny mp4 made with the ffmpeg CLI.
 6. n/seed        n=2, temperature 1, seed 5: two choices, the same again with the same seed.
 7. errors        the package's exception classes and statuses: unknown model -> NotFoundError
                  (404); temperature 5 -> BadRequestError (400) naming `temperature`; unknown
                  role -> 400; top_logprobs 21 -> 400 (over OpenAI's 20). Then, on a server started with
                  `--api-key`: a wrong key -> AuthenticationError (401), the right key works.
 8. logprobs      logprobs=True, top_logprobs=2: one finite log-probability per text token,
                  whose bytes make up the content, each with 2 alternatives (greedy: the
                  first is the token itself).

The tiny random checkpoint answers gibberish; only shapes, consistency and determinism are
checked, never the answers' sense.

    python3 tools/openai_client_check.py [--fourd target/debug/fourd]
        [--model tests/fixtures/latent/model] [--latent-size 4] [--verbose]

Needs `pip install openai` (tested with 1.59.9) and, for the `video_url` check, `ffmpeg` on PATH.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

try:
    import openai
    from openai import OpenAI
except ImportError:  # pragma: no cover
    sys.exit("the `openai` package is needed: pip install openai")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FOURD = ROOT / "target" / "debug" / "fourd"
DEFAULT_MODEL = ROOT / "tests" / "fixtures" / "latent" / "model"
DEFAULT_IMAGE = ROOT / "tests" / "fixtures" / "latent" / "media" / "img_c.png"
API_KEY = "sesame"
PROMPT = "What moves in this scene, and which way?"
MAX_TOKENS = 16
SERVING = re.compile(r"serving (\S+) at (http://\S+/v1)")


class CheckFailed(Exception):
    pass


def expect(cond, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


# --------------------------------------------------------------------------------------------
# The server process


class Server:
    """One `fourd serve` process: started, its address parsed from stderr, stopped by SIGTERM."""

    def __init__(self, fourd: Path, model: Path, latent_size: int, extra: list[str], verbose: bool):
        self.cmd = [
            str(fourd), "serve", "--model", str(model), "--port", "0",
            "--latent-size", str(latent_size), *extra,
        ]
        self.verbose = verbose
        self.lines: list[str] = []
        self.base_url: str | None = None
        self.name: str | None = None
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if self.verbose:
                print(f"    [server] {line}", file=sys.stderr)
            m = SERVING.search(line)
            if m and self.base_url is None:
                self.name, self.base_url = m.group(1), m.group(2)
                self._ready.set()
        self._ready.set()

    def stderr_tail(self, n: int = 6) -> str:
        return " | ".join(self.lines[-n:])

    def start(self, timeout: float = 180.0) -> None:
        """Starts the process and waits until it serves; raises CheckFailed otherwise."""
        env = dict(os.environ)
        # A key in the environment would make the keyless server require it.
        env.pop("FOURD_API_KEY", None)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace", env=env,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout) or self.base_url is None:
            rc = self.proc.poll()
            self.kill()
            raise CheckFailed(
                f"no `serving ... at http://.../v1` line within {timeout:.0f} s "
                f"(exit status {rc}); stderr: {self.stderr_tail()}"
            )
        # The address line alone is not enough: the process must go on serving.
        import httpx

        health = self.base_url[: -len("/v1")] + "/health"
        deadline = time.monotonic() + 10.0
        while True:
            rc = self.proc.poll()
            if rc is not None:
                time.sleep(0.2)
                raise CheckFailed(
                    f"the process exited with status {rc} right after printing its address; "
                    f"stderr: {self.stderr_tail()}"
                )
            try:
                r = httpx.get(health, timeout=2.0)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CheckFailed(f"GET {health} did not answer 200 within 10 s")
            time.sleep(0.1)
        # Still alive a moment later (a server that stops itself would be gone by now).
        time.sleep(0.5)
        rc = self.proc.poll()
        if rc is not None:
            raise CheckFailed(
                f"the process exited with status {rc} right after starting; "
                f"stderr: {self.stderr_tail()}"
            )

    def stop(self, timeout: float = 60.0) -> tuple[bool, str]:
        """SIGTERM; returns whether it exited with status 0, and a detail."""
        if self.proc is None:
            return False, "never started"
        if self.proc.poll() is not None:
            return False, (
                f"already exited (status {self.proc.returncode}) before SIGTERM; "
                f"stderr: {self.stderr_tail()}"
            )
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return False, f"still running {timeout:.0f} s after SIGTERM (killed)"
        took = time.monotonic() - t0
        time.sleep(0.1)
        if rc != 0:
            return False, f"exit status {rc} after SIGTERM; stderr: {self.stderr_tail()}"
        return True, f"exit status 0, {took:.2f} s after SIGTERM"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------------------------
# Helpers


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def user(content) -> list[dict]:
    return [{"role": "user", "content": content}]


def run_ffmpeg(args: list[str]) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise CheckFailed("ffmpeg is not on PATH")
    r = subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True, text=True, timeout=120,
    )
    if r.returncode != 0:
        raise CheckFailed(f"ffmpeg failed: {r.stderr.strip()[-300:]}")


def segments_of(message) -> list:
    extra = message.model_extra or {}
    return extra.get("latent_segments")


def check_usage(usage, max_tokens: int | None) -> str:
    expect(usage is not None, "no usage")
    for f in ("prompt_tokens", "completion_tokens", "total_tokens"):
        expect(isinstance(getattr(usage, f), int), f"usage.{f} is not an integer: {usage!r}")
    expect(usage.prompt_tokens > 0, f"usage.prompt_tokens is {usage.prompt_tokens}")
    expect(usage.completion_tokens > 0, f"usage.completion_tokens is {usage.completion_tokens}")
    expect(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"usage.total_tokens {usage.total_tokens} != prompt {usage.prompt_tokens} + completion "
        f"{usage.completion_tokens}",
    )
    if max_tokens is not None:
        expect(
            usage.completion_tokens <= max_tokens,
            f"usage.completion_tokens {usage.completion_tokens} > max_tokens {max_tokens}",
        )
    return f"usage {usage.prompt_tokens}+{usage.completion_tokens}={usage.total_tokens}"


def check_segments(segs, content: str, latent_size: int) -> None:
    expect(isinstance(segs, list), f"latent_segments is not a list: {segs!r}")
    last = 0
    for s in segs:
        expect(isinstance(s, dict), f"a latent segment is not an object: {s!r}")
        off, length = s.get("text_offset"), s.get("length")
        expect(
            isinstance(off, int) and last <= off <= len(content),
            f"latent segment text_offset {off!r} outside 0..={len(content)} or out of order",
        )
        expect(
            length == latent_size,
            f"latent segment length {length!r}, expected the server's latent size {latent_size}",
        )
        last = off


def short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


# --------------------------------------------------------------------------------------------
# The checks


class Checker:
    def __init__(self, args):
        self.args = args
        self.results: list[tuple[str, bool, str]] = []
        self.client: OpenAI | None = None
        self.name: str = Path(args.model).resolve().name
        self.baseline = None  # check 2's response
        self.tmp = Path(tempfile.mkdtemp(prefix="fourd-openai-check-"))

    def record(self, name: str, ok: bool, detail: str) -> None:
        self.results.append((name, ok, detail))
        print(f"{name:<24} {'PASS' if ok else 'FAIL'}  {detail}", flush=True)

    def run_check(self, name: str, fn) -> bool:
        try:
            detail = fn()
        except CheckFailed as e:
            self.record(name, False, str(e))
            return False
        except openai.APIStatusError as e:
            self.record(name, False, f"{type(e).__name__} {e.status_code}: {e.body!r}")
            return False
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            if self.args.verbose:
                traceback.print_exc()
            self.record(name, False, f"{type(e).__name__}: {e}")
            return False
        self.record(name, True, detail or "")
        return True

    def make_client(self, base_url: str, key: str = "unused") -> OpenAI:
        return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120.0)

    def greedy(self, messages=None, **kw):
        return self.client.chat.completions.create(
            model=self.name,
            messages=messages or user(PROMPT),
            temperature=0,
            max_tokens=MAX_TOKENS,
            **kw,
        )

    def baseline_resp(self):
        if self.baseline is None:
            self.baseline = self.greedy()
        return self.baseline

    # 1
    def models(self) -> str:
        page = self.client.models.list()
        ids = [m.id for m in page.data]
        expect(self.name in ids, f"{self.name!r} not among the listed models {ids}")
        m = next(m for m in page.data if m.id == self.name)
        expect(m.object == "model", f"object is {m.object!r}, not 'model'")
        expect(isinstance(m.created, int), f"created is {m.created!r}")
        expect(isinstance(m.owned_by, str), f"owned_by is {m.owned_by!r}")
        return f"models {ids}"

    # 2
    def chat(self) -> str:
        r = self.greedy()
        self.baseline = r
        expect(r.object == "chat.completion", f"object is {r.object!r}")
        expect(r.model == self.name, f"model is {r.model!r}, not {self.name!r}")
        expect(isinstance(r.id, str) and r.id, f"id is {r.id!r}")
        expect(isinstance(r.created, int), f"created is {r.created!r}")
        expect(len(r.choices) == 1, f"{len(r.choices)} choices, expected 1")
        c = r.choices[0]
        expect(c.index == 0, f"choices[0].index is {c.index!r}")
        expect(c.message.role == "assistant", f"role is {c.message.role!r}")
        expect(isinstance(c.message.content, str), f"content is {c.message.content!r}")
        expect(c.finish_reason in ("stop", "length"), f"finish_reason is {c.finish_reason!r}")
        u = check_usage(r.usage, MAX_TOKENS)
        if c.finish_reason == "length":
            expect(
                r.usage.completion_tokens == MAX_TOKENS,
                f"finish_reason length with completion_tokens {r.usage.completion_tokens} "
                f"!= max_tokens {MAX_TOKENS}",
            )
        expect(c.logprobs is None, f"logprobs given without being asked for: {c.logprobs!r}")
        # The extension, as the package exposes unknown fields.
        extra = r.model_extra or {}
        expect("fourd" in extra, f"no `fourd` in resp.model_extra (keys {sorted(extra)})")
        d = r.to_dict()
        expect("fourd" in d, "no `fourd` in resp.to_dict()")
        settings = (d["fourd"] or {}).get("settings")
        expect(isinstance(settings, dict), f"fourd.settings is {settings!r}")
        expect(settings.get("greedy") is True, f"fourd.settings.greedy is {settings.get('greedy')!r}")
        expect(
            settings.get("max_tokens") == MAX_TOKENS,
            f"fourd.settings.max_tokens is {settings.get('max_tokens')!r}, asked {MAX_TOKENS}",
        )
        expect(
            settings.get("latent_size") == self.args.latent_size,
            f"fourd.settings.latent_size is {settings.get('latent_size')!r}, "
            f"started with {self.args.latent_size}",
        )
        segs = segments_of(c.message)
        expect(segs is not None, "no `latent_segments` in choices[0].message.model_extra")
        expect(
            d["choices"][0]["message"].get("latent_segments") == segs,
            "choices[0].message.latent_segments differs between model_extra and to_dict()",
        )
        check_segments(segs, c.message.content, self.args.latent_size)
        return (
            f"content {short(c.message.content)}, finish {c.finish_reason}, {u}, "
            f"{len(segs)} latent segment(s), fourd.settings {sorted(settings)}"
        )

    # 3
    def determinism(self) -> str:
        a = self.baseline_resp()
        b = self.greedy()
        ta, tb = a.choices[0].message.content, b.choices[0].message.content
        expect(ta == tb, f"greedy texts differ: {short(ta)} vs {short(tb)}")
        sa, sb = segments_of(a.choices[0].message), segments_of(b.choices[0].message)
        expect(sa == sb, f"latent segments differ: {sa} vs {sb}")
        expect(a.usage == b.usage, f"usage differs: {a.usage} vs {b.usage}")
        expect(a.id != b.id, f"two responses share the id {a.id!r}")
        return f"same text {short(ta)} and segments twice"

    # 4
    def stream(self) -> str:
        base = self.baseline_resp()
        stream = self.greedy(stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        expect(chunks, "no chunks")
        text, finish, segs, ids, fourd = "", None, [], set(), None
        for ch in chunks:
            ids.add(ch.id)
            expect(ch.object == "chat.completion.chunk", f"chunk object is {ch.object!r}")
            expect(ch.model == self.name, f"chunk model is {ch.model!r}")
            if fourd is None and (ch.model_extra or {}).get("fourd") is not None:
                fourd = ch.model_extra["fourd"]
            for c in ch.choices:
                expect(c.index == 0, f"a chunk has choice index {c.index}")
                if c.delta.content:
                    text += c.delta.content
                seg = (c.delta.model_extra or {}).get("latent_segment")
                if seg is not None:
                    segs.append(seg)
                if c.finish_reason is not None:
                    expect(finish is None, "two finish_reason chunks")
                    finish = c.finish_reason
        expect(len(ids) == 1, f"chunks carry {len(ids)} different ids")
        expect(chunks[0].choices and chunks[0].choices[0].delta.role == "assistant",
               "the first chunk does not give the role")
        want = base.choices[0].message.content
        expect(text == want, f"streamed text {short(text)} != non-streaming {short(want)}")
        expect(finish == base.choices[0].finish_reason,
               f"streamed finish_reason {finish!r} != {base.choices[0].finish_reason!r}")
        expect(segs == segments_of(base.choices[0].message),
               f"streamed latent segments {segs} != {segments_of(base.choices[0].message)}")
        last = chunks[-1]
        expect(last.usage is not None, "the last chunk has no usage")
        expect(last.choices == [], f"the usage chunk has choices: {last.choices}")
        check_usage(last.usage, MAX_TOKENS)
        expect(last.usage == base.usage,
               f"streamed usage {last.usage} != non-streaming {base.usage}")
        for ch in chunks[:-1]:
            expect(ch.usage is None, "a chunk before the last carries usage")
        expect(fourd is not None, "no chunk carries the `fourd` extension")
        return (f"{len(chunks)} chunks concatenate to {short(text)}, finish {finish}, "
                f"{len(segs)} segment chunk(s), usage in the last chunk")

    # 5
    def _media_request(self, part: dict, what: str) -> str:
        text_only = self.baseline_resp().usage.prompt_tokens
        r = self.greedy(user([part, {"type": "text", "text": PROMPT}]))
        c = r.choices[0]
        expect(isinstance(c.message.content, str), f"content is {c.message.content!r}")
        expect(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
        check_usage(r.usage, MAX_TOKENS)
        expect(
            r.usage.prompt_tokens > text_only,
            f"prompt_tokens {r.usage.prompt_tokens} with {what} not above the text-only "
            f"{text_only}: the media did not reach the prompt",
        )
        return (f"{what}: prompt_tokens {r.usage.prompt_tokens} (text only {text_only}), "
                f"content {short(c.message.content, 24)}")

    def media_image(self) -> str:
        part = {"type": "image_url",
                "image_url": {"url": data_url(self.args.image, "image/png"), "detail": "auto"}}
        return self._media_request(part, "1 PNG image")

    def media_frames(self) -> str:
        frames_dir = self.tmp / "frames"
        frames_dir.mkdir(exist_ok=True)
        try:
            run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x64:rate=2:duration=2",
                        str(frames_dir / "f%d.png")])
            frames = sorted(frames_dir.glob("f*.png"), key=lambda p: int(p.stem[1:]))[:4]
            expect(len(frames) == 4, f"ffmpeg made {len(frames)} frames, not 4")
            source = "ffmpeg testsrc"
        except CheckFailed:
            frames, source = [self.args.image] * 4, "the fixture image x4"
        urls = [data_url(f, "image/png") for f in frames]
        part = {"type": "video", "video": urls, "fps": 2}
        return self._media_request(part, f"a 4-frame video part ({source}, fps 2)")

    def media_video_url(self) -> str:
        mp4 = self.tmp / "clip.mp4"
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x64:rate=4:duration=2",
                    "-pix_fmt", "yuv420p", str(mp4)])
        part = {"type": "video_url", "video_url": {"url": data_url(mp4, "video/mp4")}}
        return self._media_request(part, f"a {mp4.stat().st_size}-byte mp4 video_url")

    # 6
    def n_seed(self) -> str:
        def ask():
            return self.client.chat.completions.create(
                model=self.name, messages=user(PROMPT), n=2, temperature=1, seed=5,
                max_tokens=MAX_TOKENS,
            )

        a, b = ask(), ask()
        for r in (a, b):
            expect(len(r.choices) == 2, f"{len(r.choices)} choices, asked n=2")
            expect([c.index for c in r.choices] == [0, 1],
                   f"choice indices {[c.index for c in r.choices]}")
            for c in r.choices:
                expect(isinstance(c.message.content, str), f"content {c.message.content!r}")
                expect(c.finish_reason in ("stop", "length"), f"finish {c.finish_reason!r}")
            check_usage(r.usage, 2 * MAX_TOKENS)
        ta = [c.message.content for c in a.choices]
        tb = [c.message.content for c in b.choices]
        expect(ta == tb, f"seed 5 twice gave {ta} then {tb}")
        expect([segments_of(c.message) for c in a.choices]
               == [segments_of(c.message) for c in b.choices],
               "seed 5 twice gave different latent segments")
        settings = (a.model_extra or {}).get("fourd", {}).get("settings", {})
        expect(settings.get("seed") == 5, f"fourd.settings.seed is {settings.get('seed')!r}")
        note = "the two choices differ" if ta[0] != ta[1] else "note: the two choices are equal"
        return f"2 choices {[short(t, 16) for t in ta]}, same again with seed 5; {note}"

    # 7
    def _expect_error(self, cls, status: int, param: str | None, **kw) -> str:
        try:
            self.client.chat.completions.create(**kw)
        except cls as e:
            expect(e.status_code == status, f"{cls.__name__} with status {e.status_code}")
            body = e.body if isinstance(e.body, dict) else {}
            expect(isinstance(body.get("message"), str) and body["message"],
                   f"the error body has no message: {e.body!r}")
            expect(isinstance(body.get("type"), str), f"the error body has no type: {e.body!r}")
            if param is not None:
                expect(e.param == param and body.get("param") == param,
                       f".param is {e.param!r}, body param {body.get('param')!r}; "
                       f"expected {param!r}")
            return f"{cls.__name__} {e.status_code} param={e.param!r}"
        except openai.APIStatusError as e:
            raise CheckFailed(f"{type(e).__name__} {e.status_code} instead of {cls.__name__} "
                              f"{status}: {e.body!r}") from e
        raise CheckFailed(f"no error; expected {cls.__name__} {status}")

    def error_model(self) -> str:
        return self._expect_error(openai.NotFoundError, 404, "model",
                                  model="no-such-model", messages=user(PROMPT), max_tokens=4)

    def error_temperature(self) -> str:
        return self._expect_error(openai.BadRequestError, 400, "temperature", model=self.name,
                                  messages=user(PROMPT), temperature=5, max_tokens=4)

    def error_role(self) -> str:
        return self._expect_error(openai.BadRequestError, 400, "messages[0].role",
                                  model=self.name,
                                  messages=[{"role": "narrator", "content": PROMPT}],
                                  max_tokens=4)

    def error_top_logprobs(self) -> str:
        return self._expect_error(openai.BadRequestError, 400, "top_logprobs",
                                  model=self.name, messages=user(PROMPT), logprobs=True,
                                  top_logprobs=21, max_tokens=4)

    def auth(self, base_url: str) -> str:
        import httpx

        wrong = self.make_client(base_url, "not-the-key")
        for what, call in (
            ("chat", lambda c: c.chat.completions.create(
                model=self.name, messages=user(PROMPT), max_tokens=4)),
            ("models", lambda c: c.models.list()),
        ):
            try:
                call(wrong)
            except openai.AuthenticationError as e:
                expect(e.status_code == 401, f"{what}: status {e.status_code}")
            except openai.APIStatusError as e:
                raise CheckFailed(f"{what} with a wrong key: {type(e).__name__} "
                                  f"{e.status_code}, expected AuthenticationError 401") from e
            else:
                raise CheckFailed(f"{what} with a wrong key succeeded")
        # No Authorization header at all (the package always sends one; plain httpx does not).
        r = httpx.post(base_url + "/chat/completions", timeout=30,
                       json={"model": self.name, "messages": user(PROMPT), "max_tokens": 4})
        expect(r.status_code == 401, f"no key at all: status {r.status_code}")
        health = httpx.get(base_url[: -len("/v1")] + "/health", timeout=10)
        expect(health.status_code == 200, f"/health without a key: status {health.status_code}")
        right = self.make_client(base_url, API_KEY)
        ids = [m.id for m in right.models.list().data]
        expect(self.name in ids, f"models with the key: {ids}")
        r = right.chat.completions.create(model=self.name, messages=user(PROMPT), temperature=0,
                                          max_tokens=MAX_TOKENS)
        expect(isinstance(r.choices[0].message.content, str), "no content with the key")
        base = self.baseline
        if base is not None:
            expect(r.choices[0].message.content == base.choices[0].message.content,
                   "the keyed server's greedy text differs from the first server's")
        return ("wrong key -> AuthenticationError 401 (chat, models), no key -> 401, "
                "/health open, right key -> models and chat work")

    # 8
    def logprobs(self) -> str:
        base = self.baseline_resp()
        r = self.greedy(logprobs=True, top_logprobs=2)
        c = r.choices[0]
        content = c.message.content
        expect(content == base.choices[0].message.content,
               f"logprobs=True changed the greedy text: {short(content)} vs "
               f"{short(base.choices[0].message.content)}")
        expect(c.logprobs is not None and c.logprobs.content is not None,
               f"choices[0].logprobs.content missing: {c.logprobs!r}")
        entries = c.logprobs.content
        expect(len(entries) > 0 or content == "", "no logprob entries for a non-empty text")
        for i, t in enumerate(entries):
            expect(isinstance(t.token, str), f"entry {i}: token {t.token!r}")
            expect(isinstance(t.logprob, (int, float)) and math.isfinite(t.logprob)
                   and t.logprob <= 0.0, f"entry {i}: logprob {t.logprob!r}")
            expect(t.bytes is None or (isinstance(t.bytes, list)
                                       and all(isinstance(b, int) for b in t.bytes)),
                   f"entry {i}: bytes {t.bytes!r}")
            expect(isinstance(t.top_logprobs, list) and len(t.top_logprobs) == 2,
                   f"entry {i}: top_logprobs {t.top_logprobs!r}")
            expect(t.top_logprobs[0].bytes == t.bytes
                   and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5,
                   f"entry {i}: greedy, the first alternative should be the token itself")
        joined = bytes(b for t in entries for b in (t.bytes or [])).decode("utf-8", "replace")
        expect(joined == content,
               f"the {len(entries)} tokens join to {short(joined)}, not the content "
               f"{short(content)}: not one entry per text token")
        # Text tokens plus latent tokens (start, latent_size steps, end per finished segment)
        # cannot exceed the completion.
        segs = segments_of(c.message) or []
        latent = sum(s["length"] + 2 for s in segs)
        expect(len(entries) + latent <= r.usage.completion_tokens,
               f"{len(entries)} text tokens + {latent} latent tokens > completion_tokens "
               f"{r.usage.completion_tokens}")
        # The stream gives the same entries.
        streamed = []
        for ch in self.greedy(logprobs=True, stream=True):
            for sc in ch.choices:
                if sc.logprobs is not None and sc.logprobs.content:
                    streamed.extend(sc.logprobs.content)
        expect([(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in entries],
               f"streamed logprobs ({len(streamed)} entries) differ from the response's "
               f"({len(entries)})")
        worst = min((t.logprob for t in entries), default=0.0)
        return (f"{len(entries)} entries joining to the content, all finite (min {worst:.3f}); "
                f"the stream gives the same")

    # ----------------------------------------------------------------------------------------

    def main(self) -> int:
        args = self.args
        print(f"openai {openai.__version__}; server {args.fourd}; model {args.model}", flush=True)
        plain_checks = [
            ("1 models", self.models),
            ("2 chat", self.chat),
            ("3 determinism", self.determinism),
            ("4 stream", self.stream),
            ("5a media: image_url", self.media_image),
            ("5b media: video frames", self.media_frames),
            ("5c media: video_url", self.media_video_url),
            ("6 n=2 seed", self.n_seed),
            ("7a error: model 404", self.error_model),
            ("7b error: temperature", self.error_temperature),
            ("7c error: role", self.error_role),
            ("7d error: top_logprobs", self.error_top_logprobs),
            ("8 logprobs", self.logprobs),
        ]
        try:
            server = Server(args.fourd, args.model, args.latent_size, [], args.verbose)
            if self.run_check("server start", lambda: self._start(server)):
                self.client = self.make_client(server.base_url)
                for name, fn in plain_checks:
                    self.run_check(name, fn)
                self.run_check("server SIGTERM", lambda: self._stop(server))
            else:
                server.kill()
                for name, _ in plain_checks:
                    self.record(name, False, "not run: the server did not start")

            keyed = Server(args.fourd, args.model, args.latent_size, ["--api-key", API_KEY],
                           args.verbose)
            if self.run_check("server start --api-key", lambda: self._start(keyed)):
                self.run_check("7e api key 401", lambda: self.auth(keyed.base_url))
                self.run_check("server SIGTERM --api-key", lambda: self._stop(keyed))
            else:
                keyed.kill()
                self.record("7e api key 401", False, "not run: the server did not start")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        failed = [n for n, ok, _ in self.results if not ok]
        print(f"{len(self.results) - len(failed)}/{len(self.results)} checks passed"
              + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
        return 1 if failed else 0

    def _start(self, server: Server) -> str:
        t0 = time.monotonic()
        try:
            server.start(self.args.start_timeout)
        except CheckFailed:
            server.kill()
            raise
        expect(server.name == self.name,
               f"the server calls its model {server.name!r}, expected the folder name "
               f"{self.name!r}")
        return f"{server.base_url} serving {server.name!r} after {time.monotonic() - t0:.1f} s"

    def _stop(self, server: Server) -> str:
        ok, detail = server.stop()
        expect(ok, detail)
        return detail


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fourd", type=Path, default=DEFAULT_FOURD, help="the fourd binary")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the checkpoint folder")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a PNG for the image check")
    p.add_argument("--latent-size", type=int, default=4)
    p.add_argument("--start-timeout", type=float, default=180.0,
                   help="seconds to wait for the server's address line")
    p.add_argument("--verbose", action="store_true", help="echo the server's stderr")
    args = p.parse_args()
    if not args.fourd.exists():
        print(f"no fourd binary at {args.fourd} (cargo build first, or give --fourd)",
              file=sys.stderr)
        return 2
    if not args.model.is_dir():
        print(f"no checkpoint folder at {args.model}", file=sys.stderr)
        return 2
    return Checker(args).main()


if __name__ == "__main__":
    sys.exit(main())
