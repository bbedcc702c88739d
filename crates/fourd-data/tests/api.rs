//! The API adapters against loopback servers that speak the segmentation protocol and the
//! OpenAI chat protocol: good replies, 5xx and 429 (retried), timeouts, malformed replies, and
//! model outputs that break the rules (rejected, template text kept).

mod common;

use std::sync::Arc;
use std::time::Duration;

use fourd_api::testing::{MockChatServer, MockSegmentServer, Step};
use fourd_api::{ApiConfig, ChatClient, SegmentClient, SegmentConfig};
use fourd_data::api::{with_namer, ApiNamer, ChatRewriter, HttpSegmenter};
use fourd_data::{check_file, run_pipeline, PipelineConfig, SegmenterChoice};
use image::GrayImage;

fn seg_client(url: String) -> SegmentClient {
    SegmentClient::new(SegmentConfig {
        timeout: Duration::from_secs(2),
        max_retries: 1,
        backoff: Duration::from_millis(10),
        ..SegmentConfig::new(url)
    })
    .unwrap()
}

fn chat_client(url: String, timeout_ms: u64) -> ChatClient {
    ChatClient::new(ApiConfig {
        api_key: Some("test".into()),
        timeout: Duration::from_millis(timeout_ms),
        max_retries: 1,
        backoff: Duration::from_millis(10),
        ..ApiConfig::new(url, "mock-model")
    })
    .unwrap()
}

/// A square that moves right two pixels per frame.
fn moving_square(frames: &[image::RgbImage]) -> Vec<GrayImage> {
    frames
        .iter()
        .enumerate()
        .map(|(t, f)| {
            GrayImage::from_fn(f.width(), f.height(), |x, y| {
                image::Luma([
                    if (8 + 2 * t as u32..16 + 2 * t as u32).contains(&x) && (10..18).contains(&y) {
                        255
                    } else {
                        0
                    },
                ])
            })
        })
        .collect()
}

#[test]
fn http_segmenter_retries_and_fails_only_its_clip() {
    let root = common::tmp("api-seg-in");
    common::synth(&root, 3, 6, 40, 1);
    // Request 0: 500 (retried, then fine). Request 2 (clip 1): malformed, which is not retried.
    let server = MockSegmentServer::scripted(
        vec![Step::Status(500), Step::Ok, Step::MalformedJson],
        |_, f| moving_square(f),
    )
    .unwrap();
    let mut cfg = PipelineConfig::new(&root, common::tmp("api-seg-out"));
    cfg.jobs = 1;
    cfg.segmenter = SegmenterChoice::Custom(Arc::new(HttpSegmenter {
        client: seg_client(server.base_url()),
        prompts: vec!["grey square".into()],
        namer: None,
    }));
    let s = run_pipeline(&cfg).unwrap();
    assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
    let reason = s.failures.values().next().unwrap();
    assert!(
        reason.contains("segment") && reason.contains("/segment"),
        "{reason}"
    );
    let labels: serde_json::Value = common::clip_json(&cfg.output, 0, "labels.json");
    assert_eq!(labels["objects"][0]["name"], "grey square");
    assert_eq!(
        labels["objects"][0]["observations"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(server.request_count(), 4);
    // Masks of the wrong size: the clip fails with the sizes in the reason.
    let wrong =
        MockSegmentServer::with_masks(|_, f| f.iter().map(|_| GrayImage::new(7, 5)).collect())
            .unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.output = common::tmp("api-seg-out-2");
    cfg2.segmenter = SegmenterChoice::Custom(Arc::new(HttpSegmenter {
        client: seg_client(wrong.base_url()),
        prompts: vec!["x".into()],
        namer: None,
    }));
    let s2 = run_pipeline(&cfg2).unwrap();
    assert_eq!(s2.failures.len(), 3);
    assert!(
        s2.failures.values().all(|r| r.contains("7x5")),
        "{:?}",
        s2.failures
    );
}

/// Turns the rewrite prompt back into a JSON reply; `mangle` may break it.
fn rewrite_reply(
    req: &fourd_api::testing::RecordedRequest,
    mangle: fn(String) -> String,
) -> String {
    let text = req.chat_texts().join("\n");
    let q = text
        .split("\n\nQuestion: ")
        .nth(1)
        .and_then(|r| r.split("\n\nReasoning: ").next())
        .unwrap_or("")
        .to_string();
    let t = text
        .split("\n\nReasoning: ")
        .nth(1)
        .unwrap_or("")
        .to_string();
    serde_json::json!({"question": format!("Please tell me: {q}"), "reasoning": mangle(format!("Looking closely. {t}"))}).to_string()
}

fn rewritten(cfg: &PipelineConfig) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(cfg.output.join("clips/group_0000"))
        .unwrap()
        .flatten()
    {
        let c: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(e.path().join("candidates.json")).unwrap(),
        )
        .unwrap();
        v.extend(c["candidates"].as_array().unwrap().iter().cloned());
    }
    v
}

#[test]
fn chat_rewrites_are_checked() {
    let root = common::tmp("api-rw-in");
    common::synth(&root, 2, 8, 48, 3);
    let run = |name: &str, server: &MockChatServer, timeout_ms: u64| {
        let mut cfg = PipelineConfig::new(&root, common::tmp(name));
        cfg.rewriter = Some(Arc::new(ChatRewriter {
            client: chat_client(server.base_url(), timeout_ms),
        }));
        let s = run_pipeline(&cfg).unwrap();
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        for f in [&s.dift_path, &s.rl_path] {
            let r = check_file(f, None).unwrap();
            assert!(r.ok(), "{}", r.render());
        }
        rewritten(&cfg)
    };
    // Good rewrites (after one 429) are kept.
    let good = MockChatServer::start(|req, n| {
        if n == 0 {
            Step::RateLimited {
                retry_after_secs: Some(0),
            }
        } else {
            Step::Reply(rewrite_reply(req, |t| t))
        }
    })
    .unwrap();
    let c = run("api-rw-good", &good, 2000);
    assert!(!c.is_empty());
    assert!(
        c.iter()
            .all(|c| c["rewrite"] == "question accepted; reasoning accepted"),
        "{:?}",
        c[0]["rewrite"]
    );
    assert!(c.iter().all(
        |c| c["think"].as_str().unwrap().starts_with("Looking closely.")
            && c["question"]
                .as_str()
                .unwrap()
                .starts_with("Please tell me")
    ));
    // A reasoning that loses an imagery tag is rejected; the template reasoning stays.
    let drop_tag = MockChatServer::start(|req, _| {
        Step::Reply(rewrite_reply(req, |t| t.replacen("<output_image>", "", 1)))
    })
    .unwrap();
    let c = run("api-rw-tag", &drop_tag, 2000);
    assert!(c.iter().all(|c| c["rewrite"]
        .as_str()
        .unwrap()
        .contains("reasoning rejected")
        && !c["think"].as_str().unwrap().starts_with("Looking")));
    // A reasoning that concludes something else is rejected.
    let other = MockChatServer::start(|req, _| {
        let text = req.chat_texts().join("\n");
        let answer = text
            .split("keep the conclusion \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        Step::Reply(
            rewrite_reply(req, |t| t)
                .replace(&answer, "Something Else")
                .replace(&answer.to_lowercase(), "something else"),
        )
    })
    .unwrap();
    let c = run("api-rw-answer", &other, 2000);
    assert!(
        c.iter().all(|c| c["rewrite"]
            .as_str()
            .unwrap()
            .contains("reasoning rejected")),
        "{:?}",
        c[0]["rewrite"]
    );
    // Malformed replies and timeouts: template text kept, the reason recorded, nothing fails.
    let bad = MockChatServer::fixed("this is not json").unwrap();
    let c = run("api-rw-bad", &bad, 2000);
    assert!(c.iter().all(|c| c["rewrite"]
        .as_str()
        .unwrap()
        .contains("not the requested JSON")));
    let slow =
        MockChatServer::scripted(vec![Step::Hang(Duration::from_millis(600)); 64], "{}").unwrap();
    let c = run("api-rw-slow", &slow, 150);
    assert!(
        c.iter()
            .all(|c| c["rewrite"].as_str().unwrap().contains("did not answer")),
        "{:?}",
        c[0]["rewrite"]
    );
}

#[test]
fn object_names_from_the_chat_model_are_checked() {
    let root = common::tmp("api-name-in");
    common::synth(&root, 1, 6, 48, 5);
    let names = |reply: &str, name: &str| -> Vec<String> {
        let server = MockChatServer::fixed(reply).unwrap();
        let mut cfg = PipelineConfig::new(&root, common::tmp(name));
        cfg.segmenter = with_namer(
            SegmenterChoice::Instances,
            ApiNamer {
                client: chat_client(server.base_url(), 2000),
            },
        );
        let s = run_pipeline(&cfg).unwrap();
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        let labels: serde_json::Value = common::clip_json(&cfg.output, 0, "labels.json");
        labels["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    let good = names("A shiny ball", "api-name-good");
    assert!(good.iter().all(|n| n.ends_with("shiny ball")), "{good:?}");
    // A name that describes motion is refused: the colour + shape names stay.
    let leaky = names("ball rolling left", "api-name-leaky");
    assert!(leaky.iter().all(|n| !n.contains("left")), "{leaky:?}");
}

#[test]
fn second_opinions_are_recorded_and_never_used_as_answers() {
    let root = common::tmp("api-judge-in");
    common::synth(&root, 3, 8, 48, 6);
    let plain = PipelineConfig::new(&root, common::tmp("api-judge-plain"));
    let reference = run_pipeline(&plain).unwrap();
    let judged = |reply: &str, name: &str| {
        let server = MockChatServer::fixed(reply).unwrap();
        let mut cfg = PipelineConfig::new(&root, common::tmp(name));
        cfg.judge = Some(Arc::new(fourd_data::api::ChatJudge {
            client: chat_client(server.base_url(), 2000),
        }));
        let s = run_pipeline(&cfg).unwrap();
        let mut opinions = Vec::new();
        for i in 0..3 {
            let l: serde_json::Value = common::clip_json(&cfg.output, i, "labels.json");
            for o in l["objects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["direction"].is_string())
            {
                opinions.push(o["second_opinion"].clone());
            }
        }
        let strip = |p: &std::path::Path, out: &std::path::Path| {
            std::fs::read_to_string(p)
                .unwrap()
                .replace(&out.display().to_string(), "OUT")
        };
        assert_eq!(
            strip(&s.rl_path, &cfg.output),
            strip(&reference.rl_path, &plain.output),
            "a second opinion changed the questions"
        );
        (s, opinions)
    };
    let (s, opinions) = judged("Moving Left.", "api-judge-left");
    assert!(!opinions.is_empty());
    assert!(
        opinions.iter().all(|o| o["direction"] == "Moving Left"),
        "{opinions:?}"
    );
    let a = s.agreement.unwrap();
    assert_eq!(a.second_opinion_vs_measured.1, opinions.len());
    // A reply that is not exactly a label is recorded as an error (no substring guessing).
    let (_, opinions) = judged("It drifts to the left, I think", "api-judge-vague");
    assert!(
        opinions.iter().all(|o| o["direction"].is_null()
            && o["error"].as_str().unwrap().contains("not one of the 11")),
        "{opinions:?}"
    );
}
