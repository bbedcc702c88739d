//! A request's [`Event`]s turned into OpenAI's response shapes: one `chat.completion` object,
//! or `chat.completion.chunk` server-sent events ending with `data: [DONE]`. Both are built from
//! the same events, so a stream's deltas concatenate to the non-streaming text.
//!
//! Extensions (fields OpenAI clients ignore):
//! * `choices[i].message.latent_segments` (streaming: `choices[i].delta.latent_segment`, one per
//!   segment as it ends): `{"text_offset", "length"}`, an imagery segment of `length` latent
//!   steps taken after the first `text_offset` characters (Unicode scalar values) of the
//!   choice's content. The imagery tokens themselves are not in `content`.
//! * `fourd.settings`: the sampling settings, token limit and latent size the request ran with
//!   (the checkpoint's `generation_config.json` filling what the request left unset).

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::{Event, TokenLogprob};
use crate::error::ApiError;

/// What every chunk or response of one request repeats.
#[derive(Clone, Debug)]
pub struct Shape {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub include_usage: bool,
    pub logprobs: bool,
}

#[derive(Default)]
struct ChoiceSoFar {
    content: String,
    segments: Vec<Value>,
    logprobs: Vec<TokenLogprob>,
    finish_reason: Option<&'static str>,
    completion_tokens: usize,
}

/// Waits for the whole answer and returns it as one `chat.completion`.
pub async fn collect(mut events: UnboundedReceiver<Event>, shape: Shape) -> Response {
    let mut choices: Vec<ChoiceSoFar> = Vec::new();
    let mut prompt_tokens = 0;
    let mut settings = Value::Null;
    while let Some(e) = events.recv().await {
        match e {
            Event::Started {
                prompt_tokens: p,
                settings: s,
                ..
            } => {
                prompt_tokens = p;
                settings = s;
            }
            Event::Delta {
                index,
                text,
                logprobs,
            } => {
                let c = slot(&mut choices, index);
                c.content.push_str(&text);
                c.logprobs.extend(logprobs);
            }
            Event::Imagery {
                index,
                text_offset,
                length,
            } => slot(&mut choices, index)
                .segments
                .push(json!({"text_offset": text_offset, "length": length})),
            Event::Finished {
                index,
                finish_reason,
                completion_tokens,
            } => {
                let c = slot(&mut choices, index);
                c.finish_reason = Some(finish_reason);
                c.completion_tokens = completion_tokens;
            }
            Event::Failed(e) => return e.into_response(),
        }
    }
    if choices.is_empty() || choices.iter().any(|c| c.finish_reason.is_none()) {
        return ApiError::internal("the model stopped before the answer was complete")
            .into_response();
    }
    let completion: usize = choices.iter().map(|c| c.completion_tokens).sum();
    let body = json!({
        "id": shape.id,
        "object": "chat.completion",
        "created": shape.created,
        "model": shape.model,
        "choices": choices.iter().enumerate().map(|(i, c)| json!({
            "index": i,
            "message": {
                "role": "assistant",
                "content": c.content,
                "latent_segments": c.segments,
            },
            "logprobs": shape.logprobs.then(|| json!({"content": c.logprobs})),
            "finish_reason": c.finish_reason,
        })).collect::<Vec<_>>(),
        "usage": usage(prompt_tokens, completion),
        "fourd": {"settings": settings},
    });
    axum::Json(body).into_response()
}

fn slot(choices: &mut Vec<ChoiceSoFar>, index: usize) -> &mut ChoiceSoFar {
    if choices.len() <= index {
        choices.resize_with(index + 1, ChoiceSoFar::default);
    }
    &mut choices[index]
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// The answer as server-sent events: a first chunk with the role, one per delta, imagery segment
/// and finish, the usage when asked for, then `[DONE]`. An error before the first token is sent
/// as an `error` object in the stream (the status line is already 200 by then).
pub fn stream(
    events: UnboundedReceiver<Event>,
    shape: Shape,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    use futures_util::StreamExt;
    struct St {
        events: UnboundedReceiver<Event>,
        shape: Shape,
        prompt_tokens: usize,
        completion: usize,
        settings: Value,
        done: bool,
    }
    let st = St {
        events,
        shape,
        prompt_tokens: 0,
        completion: 0,
        settings: Value::Null,
        done: false,
    };
    let s = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let chunk = |st: &St, choices: Value| -> SseEvent {
            SseEvent::default().data(
                json!({
                    "id": st.shape.id,
                    "object": "chat.completion.chunk",
                    "created": st.shape.created,
                    "model": st.shape.model,
                    "choices": choices,
                })
                .to_string(),
            )
        };
        let out = match st.events.recv().await {
            Some(Event::Started {
                prompt_tokens,
                choices,
                settings,
            }) => {
                st.prompt_tokens = prompt_tokens;
                st.settings = settings.clone();
                let roles: Vec<Value> = (0..choices)
                    .map(|i| json!({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}))
                    .collect();
                let mut c = json!({
                    "id": st.shape.id,
                    "object": "chat.completion.chunk",
                    "created": st.shape.created,
                    "model": st.shape.model,
                    "choices": roles,
                });
                c["fourd"] = json!({"settings": settings});
                SseEvent::default().data(c.to_string())
            }
            Some(Event::Delta {
                index,
                text,
                logprobs,
            }) => {
                let lp = st.shape.logprobs.then(|| json!({"content": logprobs}));
                chunk(
                    &st,
                    json!([{"index": index, "delta": {"content": text}, "logprobs": lp, "finish_reason": null}]),
                )
            }
            Some(Event::Imagery {
                index,
                text_offset,
                length,
            }) => chunk(
                &st,
                json!([{"index": index, "delta": {"latent_segment": {"text_offset": text_offset, "length": length}}, "finish_reason": null}]),
            ),
            Some(Event::Finished {
                index,
                finish_reason,
                completion_tokens,
            }) => {
                st.completion += completion_tokens;
                chunk(
                    &st,
                    json!([{"index": index, "delta": {}, "finish_reason": finish_reason}]),
                )
            }
            Some(Event::Failed(e)) => {
                st.done = true;
                SseEvent::default().data(e.body().to_string())
            }
            None => {
                st.done = true;
                let mut data = String::new();
                if st.shape.include_usage {
                    let u = json!({
                        "id": st.shape.id,
                        "object": "chat.completion.chunk",
                        "created": st.shape.created,
                        "model": st.shape.model,
                        "choices": [],
                        "usage": usage(st.prompt_tokens, st.completion),
                    });
                    data = u.to_string();
                }
                if data.is_empty() {
                    SseEvent::default().data("[DONE]")
                } else {
                    // The usage chunk, then [DONE], as two events.
                    return Some((
                        vec![
                            Ok(SseEvent::default().data(data)),
                            Ok(SseEvent::default().data("[DONE]")),
                        ],
                        st,
                    ));
                }
            }
        };
        Some((vec![Ok(out)], st))
    });
    Sse::new(s.flat_map(futures_util::stream::iter)).keep_alive(KeepAlive::default())
}
