//! `fourd serve` as a user runs it: from another folder, a relative `--model`, port 0 (the
//! address it prints), a greedy chat completion through an OpenAI-compatible client that equals
//! `fourd infer --greedy --json` of the same question token for token, and SIGTERM ending it
//! with exit status 0.

mod common;
use common::{copy_tree, fixture_model, fourd_in, ok, start_serve, tmp};
use std::process::Command;

#[test]
fn served_greedy_answers_equal_fourd_infer_and_sigterm_stops_cleanly() {
    let cwd = tmp("serve");
    copy_tree(&fixture_model(), &cwd.join("ckpt"));
    let question = "How many objects are there in the image?";
    let infer = ok(
        "infer",
        &fourd_in(
            &cwd,
            &[
                "infer",
                "--model",
                "ckpt",
                "--question",
                question,
                "--greedy",
                "--json",
                "--max-new-tokens",
                "24",
                "--latent-size",
                "4",
            ],
        ),
    );
    let infer: serde_json::Value = serde_json::from_str(infer.trim()).unwrap();

    let (mut child, base, lines) =
        start_serve(&cwd, &["--model", "ckpt", "--latent-size", "4"], "ckpt");
    let mut cfg = fourd_api::ApiConfig::new(base, "ckpt");
    cfg.max_retries = 0;
    let client = fourd_api::ChatClient::new(cfg).unwrap();
    let mut fields = serde_json::Map::new();
    fields.insert("temperature".into(), 0.into());
    fields.insert("max_tokens".into(), 24.into());
    let reply = client
        .chat_with(&[fourd_api::ChatMessage::user(question)], &fields)
        .unwrap();
    assert_eq!(reply.content.as_deref(), infer["text"].as_str());
    assert_eq!(
        reply.finish_reason.as_deref(),
        infer["finish_reason"].as_str()
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(exit.success(), "fourd serve exited with {exit}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}
