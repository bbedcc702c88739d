#!/usr/bin/env python3
"""Writes tests/fixtures/vlm4d/judge.json: the exact request VLM4D's official LLM judge sends for
a row and a model response, and what the official code records for a given judge reply. The
Rust judge client (`fourd eval`, any OpenAI-compatible endpoint) is checked against it.

Where it comes from (ShijieZhou-UCLA/VLM4D@23f2680764a2266e69cea6f81ef660decd28792d, "VLM4D"):
  * acc_evaluation.py:54-56 builds `AsyncOpenAI(api_key=OPENAI_API_KEY)` (default base URL,
    default SDK retries); :63 calls `get_acc_async(examples, client)` once per outputs/*.json.
  * utils/eval_utils.py:8-10 the structured format `EvaluationOutput{extracted_answer: str,
    correct: bool}`; :13-22 the system prompt; :26-46 `prepare_evaluation_message` (ported
    verbatim below); :58-65 the call: engine "o4-mini", max_tokens=1024,
    requests_per_minute=1000, temperature/top_p left at their defaults; :67-88 what is recorded
    per row and the accuracy `count / len(examples)`.
  * utils/api_utils.py:439-448 the defaults temperature=1.0, top_p=1.0; :395-437 the request
    and retry loop (ported below without its sleeps and rate limiter): a model name containing
    'o1'/'o3'/'o4' sends `max_completion_tokens`, anything else `max_tokens` (:409); the call is
    `client.beta.chat.completions.parse(..., response_format=EvaluationOutput)`;
    RateLimitError -> sleep 10-20 s and retry, BadRequestError -> None, any other OpenAIError
    -> sleep 5-10 s and retry, at most 10 tries then None. :466-475 `.choices[0].message.parsed`,
    None on any exception.
  * requirements/requirements.txt pins openai==1.59.9 and pydantic==2.10.5. The wire
    `response_format` is what that SDK's `type_to_response_format_param`
    (openai/lib/_parsing/_completions.py) builds from the pydantic model; it is computed here by
    the installed SDK, not typed.
  * utils/constant.py:8-24 and utils/prepare_input.py:14-22: the prompt the *evaluated model* is
    given (CoT / direct-output). Not part of the judge request; each case carries it as
    `model_prompts` so the generation side can be checked too.

How: every request goes through the real openai SDK into an httpx.MockTransport (no network).
The transport records the JSON body and answers with a canned chat completion, so `messages`,
`response_format` and `request_params` are read off the wire and checked against the port.
`parse` feeds canned judge replies through the SDK's own parsing and the ported retry loop and
`get_acc_async` bookkeeping. `official_outcome` says what the official code does:
  "parsed"  a pydantic object; `correct`/`extracted_answer` are its fields.
  "none"    the call path yields None; get_acc_async (eval_utils.py:80-83) records
            extracted_answer "" and correct false.
  "raises:<Exception>"  the SDK raises an exception that api_utils.py:428-436 does not catch
            (pydantic's ValidationError is not an OpenAIError), so tqdm_asyncio.gather and
            acc_evaluation.py abort and nothing is recorded for the file. For these entries
            `correct`/`extracted_answer` hold the failure-path values ("", false), i.e. what a
            port that does not crash should record; they are NOT an official output.
`requests` is how many HTTP requests the official loop makes for that reply (10 = every try).
The row responses are ours; rows are tests/fixtures/vlm4d/{real,synthetic}_mc.json
(make_vlm4d_fixture.py; note that script deletes the directory, so run this one after it).

Run (needs the pinned SDK; no network besides the pip install):
  python3 -m venv /tmp/vlm4d-venv && /tmp/vlm4d-venv/bin/pip install openai==1.59.9 pydantic==2.10.5
  /tmp/vlm4d-venv/bin/python tools/reference/make_vlm4d_judge_fixture.py   (~1 s; deterministic)
Other SDK versions are refused unless --any-sdk is given (the schema may differ).
"""
import asyncio
import json
import os
import sys
from string import Template

import httpx
import openai
import pydantic
from openai import AsyncOpenAI, OpenAIError
from openai.lib._parsing._completions import type_to_response_format_param
from pydantic import BaseModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "vlm4d")
REPO = "ShijieZhou-UCLA/VLM4D@23f2680764a2266e69cea6f81ef660decd28792d"
PINNED = {"openai": "1.59.9", "pydantic": "2.10.5"}  # VLM4D requirements/requirements.txt


# ---- VLM4D utils/eval_utils.py:8-46, verbatim ----------------------------------------------
class EvaluationOutput(BaseModel):
    extracted_answer: str
    correct: bool


INSTRUCTION="""Your task is to evaluate whether the model's final answer is correct by comparing it to the ground-truth answer provided for the given question.

You should first extract the final answer from the model's response, and then compare the extracted answer with the choice that matches the ground-truth answer to determine its correctness.
"""

MULTI_CHOICE_INSTRUCTION=INSTRUCTION + "Output your response in the following structured format:\n" + """{
    "extracted_answer": // str value "A" "B" "C" "D", followed by a colon and the corresponding answer text, e.g., "A: Answer A text". If the model's response does not contain a valid choice and reasoning, then "No Valid Answer".
    "correct": // boolean value, True if the extracted answer matches the ground-truth answer (correct choice), False otherwise ("No Valid Answer" is also considered False).
}
"""



def prepare_evaluation_message(example, response):
    user_prompt = ""
    question_type = example["question_type"]
    if question_type == "multiple-choice":
        optionized_list = [f"{key}: {value}" for i, (key, value) in enumerate(example['choices'].items())]
        optionized_str = "\n".join(optionized_list)
        question_context = f"Question: {example['question']}\n\nOptions:\n{optionized_str}"
    else:
        print("Unsupported question type:", question_type)
        return None
    
    gt_answer = f"Ground Truth Answer: {example['answer']}"
    model_response = f"Model Response to the Question: {response}"
    
    user_prompt = f"{question_context}\n\n{gt_answer}\n\n{model_response}"
    
    message = [
        {"role": "system", "content": MULTI_CHOICE_INSTRUCTION},
        {"role": "user", "content": user_prompt},
    ]
    return message
# ---- end eval_utils.py port ------------------------------------------------------------------


# ---- VLM4D utils/constant.py:8-24 and utils/prepare_input.py:17-22, verbatim ----------------
MULTI_CHOICE_COT_PROMPT = Template("""
Question: $question
$optionized_str

Answer the given multiple-choice question step by step. Begin by explaining your reasoning process clearly. In the last sentence of your response, you must conclude by stating the final answer using the following format: 'Therefore, the final answer is: $$LETTER' (without quotes), where $$LETTER must be only one of the options (A or B or C or D). Think step by step before answering.""")

MULTI_CHOICE_DO_PROMPT = Template("""
Question: $question
$optionized_str

Do not generate any intermediate reasoning process. Answer directly with the option letter from the given choices.
""")


def model_prompt(query, template):
    optionized_list = [f"{key}: {value}" for i, (key, value) in enumerate(query['choices'].items())]
    optionized_str = "\n".join(optionized_list)
    return template.substitute(question=query['question'], optionized_str=optionized_str)
# ---- end constant.py / prepare_input.py port -------------------------------------------------


# Arguments of the official call (eval_utils.py:58-65) and defaults (api_utils.py:439-448).
ENGINE_NAME = "o4-mini"
MAX_TOKENS = 1024
TEMPERATURE = 1.0
TOP_P = 1.0


async def throttled_structure(client, model, messages, temperature, max_tokens, top_p,
                              structured_format):
    """api_utils.py:395-437 without `async with limiter` and the asyncio.sleep calls."""
    for _ in range(10):
        try:
            if any(model_prefix in model.lower() for model_prefix in ['o1', 'o3', 'o4']):
                return await client.beta.chat.completions.parse(
                    model=model,
                    messages=messages,
                    temperature=temperature,
                    max_completion_tokens=max_tokens,
                    top_p=top_p,
                    response_format=structured_format,
                )
            else:
                return await client.beta.chat.completions.parse(
                    model=model,
                    messages=messages,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    top_p=top_p,
                    response_format=structured_format,
                )
        except openai.RateLimitError:
            pass  # official: sleep 10-20 s, retry
        except openai.BadRequestError:
            return None
        except OpenAIError:
            pass  # official: sleep 5-10 s, retry
    return None


def parsed_of(response):
    """api_utils.py:468-474."""
    try:
        response = response.choices[0].message.parsed
    except:  # noqa: E722  (as in the original)
        response = None
    return response


def record(example, output):
    """eval_utils.py:70-85 (the fields a judged row gets)."""
    result = {
        "id": example["id"],
        "question": example["question"],
        "choices": example["choices"],
        "response": example["response"],
        "ground_truth_answer": example["answer"],
    }
    try:
        result["extracted_answer"] = output.extracted_answer
        result["correct"] = output.correct
    except Exception:
        result["extracted_answer"] = ""
        result["correct"] = False
    return result


class Judge:
    """A fake OpenAI endpoint: records request bodies, answers with the scripted reply."""

    def __init__(self):
        self.bodies = []
        self.reply = None

    def handler(self, request):
        self.bodies.append(json.loads(request.content))
        r = self.reply
        if r.get("http_status", 200) != 200:
            return httpx.Response(r["http_status"], json={"error": {
                "message": "fixture error", "type": "invalid_request_error", "param": None,
                "code": None}})
        return httpx.Response(200, json={
            "id": "chatcmpl-fixture", "object": "chat.completion", "created": 0,
            "model": ENGINE_NAME,
            "choices": [{"index": 0, "logprobs": None,
                         "finish_reason": r.get("finish_reason", "stop"),
                         "message": {"role": "assistant", "content": r["content"],
                                     "refusal": r.get("refusal")}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def load_rows():
    rows = []
    for name in ["real_mc.json", "synthetic_mc.json"]:
        with open(os.path.join(OUT, name)) as f:
            for r in json.load(f):
                rows.append((name, r))
    return rows


def responses_for(row):
    """Two responses per row: a <think>/<answer> one naming the GT letter, a plain one naming
    the next letter (so one is right, one wrong)."""
    letters = list(row["choices"])
    gt = next(k for k, v in row["choices"].items() if v == row["answer"])
    other = letters[(letters.index(gt) + 1) % len(letters)]
    think = (f"<think>The question asks: {row['question']} I watch the clip frame by frame; "
             f"option {gt} (\"{row['choices'][gt]}\") fits what moves.\nSo the answer is {gt}."
             f"</think><answer>{gt}</answer>")
    plain = (f"Looking at the video, the motion is toward {row['choices'][other]}, about 90\u00b0 "
             f"off the first frame.\n\nTherefore, the final answer is: {other}")
    return [think, plain]


PARSE_REPLIES = [
    {"content": '{"extracted_answer":"B: left","correct":true}'},
    {"content": '{"extracted_answer":"A: not moving","correct":false}'},
    {"content": '{"extracted_answer": "No Valid Answer", "correct": false}'},
    {"content": '{\n  "correct": true,\n  "extracted_answer": "C:  not turning"\n}\n'},
    {"content": '{"extracted_answer":"D: 0","correct":false,"reason":"extra keys are ignored"}'},
    {"content": '{"extracted_answer":"B: left","correct":"true"}'},
    {"content": '{"extracted_answer":"B: left","correct":1}'},
    {"content": '{"extracted_answer":"B: left","correct":'},
    {"content": '```json\n{"extracted_answer":"B: left","correct":true}\n```'},
    {"content": '{"correct":true}'},
    {"content": '{"extracted_answer":null,"correct":true}'},
    {"content": ''},
    {"content": '', "refusal": "I can't help with that."},
    {"content": '{"extracted_answer":"B: left","correct":true}', "finish_reason": "length"},
    {"content": '', "http_status": 400},
]


async def build():
    judge = Judge()
    client = AsyncOpenAI(api_key="sk-fixture", base_url="http://judge.invalid/v1",
                         http_client=httpx.AsyncClient(transport=httpx.MockTransport(judge.handler)))
    response_format = type_to_response_format_param(EvaluationOutput)
    request_params = {"temperature": TEMPERATURE, "max_completion_tokens": MAX_TOKENS,
                      "top_p": TOP_P}
    sdk_added = {"stream": False}  # openai/resources/beta/chat/completions.py parse() body

    cases = []
    for name, row in load_rows():
        for resp in responses_for(row):
            messages = prepare_evaluation_message(row, resp)
            judge.bodies.clear()
            judge.reply = {"content": '{"extracted_answer":"A: x","correct":false}'}
            out = await throttled_structure(client, ENGINE_NAME, messages, TEMPERATURE,
                                            MAX_TOKENS, TOP_P, EvaluationOutput)
            assert parsed_of(out) is not None and len(judge.bodies) == 1
            body = judge.bodies[0]
            want = {"model": ENGINE_NAME, "messages": messages, "response_format": response_format,
                    **request_params, **sdk_added}
            assert body == want, (body, want)
            cases.append({
                "file": name,
                "row": {k: row[k] for k in ["id", "question_type", "question", "choices", "answer"]},
                "response": resp,
                "messages": messages,
                "model_prompts": {"cot": model_prompt(row, MULTI_CHOICE_COT_PROMPT),
                                  "direct-output": model_prompt(row, MULTI_CHOICE_DO_PROMPT)},
            })

    example = dict(cases[0]["row"], response=cases[0]["response"])
    parse = []
    for reply in PARSE_REPLIES:
        judge.bodies.clear()
        judge.reply = reply
        try:
            out = parsed_of(await throttled_structure(
                client, ENGINE_NAME, cases[0]["messages"], TEMPERATURE, MAX_TOKENS, TOP_P,
                EvaluationOutput))
            outcome = "none" if out is None else "parsed"
        except Exception as e:  # not caught by the official loop: the run aborts
            out, outcome = None, f"raises:{type(e).__name__}"
        rec = record(example, out)
        entry = {"content": reply["content"], "finish_reason": reply.get("finish_reason", "stop"),
                 "refusal": reply.get("refusal")}
        if "http_status" in reply:
            entry["http_status"] = reply["http_status"]
        entry.update({"official_outcome": outcome, "requests": len(judge.bodies),
                      "correct": rec["correct"], "extracted_answer": rec["extracted_answer"]})
        parse.append(entry)
    await client.close()

    return {
        "source": (f"{REPO}: utils/eval_utils.py:8-88 (format, prompt, call, recording), "
                   "utils/api_utils.py:395-475 (request, retries, parsed), acc_evaluation.py:54-63 "
                   "(client), utils/constant.py:8-24 + utils/prepare_input.py:14-22 (model_prompts); "
                   f"wire format from openai=={openai.__version__}, pydantic=={pydantic.VERSION} "
                   "(VLM4D's requirements/requirements.txt pins openai==1.59.9, pydantic==2.10.5)"),
        "model": ENGINE_NAME,
        "request_params": request_params,
        "sdk_added_params": sdk_added,
        "response_format": response_format,
        "cases": cases,
        "parse": parse,
    }


def main():
    got = {"openai": openai.__version__, "pydantic": pydantic.VERSION}
    if got != PINNED and "--any-sdk" not in sys.argv[1:]:
        sys.exit(f"need {PINNED} (VLM4D's pins), have {got}; pass --any-sdk to go on anyway")
    fixture = asyncio.run(build())
    path = os.path.join(OUT, "judge.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {len(fixture['cases'])} cases and {len(fixture['parse'])} parse replies to {path}")


if __name__ == "__main__":
    main()
