//! ChatClient against loopback servers speaking the OpenAI chat-completions protocol.

use std::time::{Duration, Instant};

use base64::Engine as _;
use fourd_api::testing::{MockChatServer, MockResponse, MockServer, Step};
use fourd_api::{ApiConfig, ApiError, ChatClient, ChatContent, ChatMessage};
use serde_json::json;

fn config(base_url: String) -> ApiConfig {
    ApiConfig {
        base_url,
        api_key: Some("sk-test".into()),
        model: "gpt-mock".into(),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff: Duration::from_millis(10),
        cache_dir: None,
    }
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 100, 7]));
    fourd_api::png_from_rgb(&img).unwrap()
}

fn question() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You name objects."),
        ChatMessage {
            role: "user".into(),
            content: vec![
                ChatContent::Text("What is this?".into()),
                ChatContent::ImagePng(png()),
            ],
        },
    ]
}

#[test]
fn chat_success_sends_model_messages_images_and_key() {
    let server = MockChatServer::fixed("a red cube").unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    assert_eq!(
        client.endpoint(),
        format!("{}/chat/completions", server.base_url())
    );

    let reply = client.chat(&question()).unwrap();
    assert_eq!(reply, "a red cube");
    assert_eq!(server.request_count(), 1);

    let req = server.last_request().unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
    assert!(req
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = req.json().expect("request body is JSON");
    assert_eq!(body["model"], "gpt-mock");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You name objects."})
    );
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(
        body["messages"][1]["content"][0],
        json!({"type": "text", "text": "What is this?"})
    );
    let url = body["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    let b64 = url
        .strip_prefix("data:image/png;base64,")
        .expect("PNG data URL");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        png()
    );
    assert_eq!(req.chat_texts(), vec!["You name objects.", "What is this?"]);
    assert_eq!(req.chat_image_count(), 1);
}

#[test]
fn reply_can_depend_on_the_request() {
    let server = MockChatServer::start(|req, n| {
        let last = req.chat_texts().last().cloned().unwrap_or_default();
        Step::Reply(format!("{n}: {}", last.to_uppercase()))
    })
    .unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    assert_eq!(client.chat(&[ChatMessage::user("abc")]).unwrap(), "0: ABC");
    assert_eq!(client.chat(&[ChatMessage::user("xy")]).unwrap(), "1: XY");
}

#[test]
fn cache_hit_makes_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockChatServer::start(|_, n| Step::Reply(format!("answer {n}"))).unwrap();
    let mut cfg = config(server.base_url());
    cfg.cache_dir = Some(dir.path().join("cache"));
    let client = ChatClient::new(cfg.clone()).unwrap();

    assert_eq!(client.chat(&question()).unwrap(), "answer 0");
    assert_eq!(server.request_count(), 1);
    // Same request: served from the cache, the server sees nothing.
    assert_eq!(client.chat(&question()).unwrap(), "answer 0");
    assert_eq!(server.request_count(), 1);

    // One JSON file per key, named by the key, no temporary files left.
    let key = client.cache_key(&question()).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![format!("{key}.json")]);
    let entry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("cache").join(format!("{key}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(entry["content"], "answer 0");
    assert_eq!(entry["model"], "gpt-mock");

    // A new client on the same folder hits too.
    let again = ChatClient::new(cfg.clone()).unwrap();
    assert_eq!(again.chat(&question()).unwrap(), "answer 0");
    assert_eq!(server.request_count(), 1);

    // A different message, or a different model, is a different key.
    assert_eq!(
        client.chat(&[ChatMessage::user("other")]).unwrap(),
        "answer 1"
    );
    assert_eq!(server.request_count(), 2);
    let other_model = ChatClient::new(ApiConfig {
        model: "gpt-other".into(),
        ..cfg
    })
    .unwrap();
    assert_eq!(other_model.chat(&question()).unwrap(), "answer 2");
    assert_eq!(server.request_count(), 3);
}

#[test]
fn no_cache_dir_means_every_call_is_a_request() {
    let server = MockChatServer::fixed("x").unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    client.chat(&question()).unwrap();
    client.chat(&question()).unwrap();
    assert_eq!(server.request_count(), 2);
}

#[test]
fn errors_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockChatServer::scripted(vec![Step::Status(400)], "fine").unwrap();
    let mut cfg = config(server.base_url());
    cfg.cache_dir = Some(dir.path().to_path_buf());
    let client = ChatClient::new(cfg).unwrap();
    assert!(client.chat(&question()).is_err());
    assert_eq!(client.chat(&question()).unwrap(), "fine");
    assert_eq!(server.request_count(), 2);
}

#[test]
fn rate_limit_then_success_honours_retry_after() {
    let server = MockChatServer::scripted(
        vec![Step::RateLimited {
            retry_after_secs: Some(1),
        }],
        "ok now",
    )
    .unwrap();
    let mut cfg = config(server.base_url());
    cfg.backoff = Duration::from_millis(1);
    let client = ChatClient::new(cfg).unwrap();
    let start = Instant::now();
    assert_eq!(client.chat(&question()).unwrap(), "ok now");
    assert_eq!(server.request_count(), 2, "one 429, one retry");
    // The backoff is 1 ms; only Retry-After: 1 explains a wait of a second.
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "waited only {:?}",
        start.elapsed()
    );
}

#[test]
fn rate_limit_without_retry_after_uses_backoff() {
    let server = MockChatServer::scripted(
        vec![
            Step::RateLimited {
                retry_after_secs: None,
            },
            Step::Status(503),
        ],
        "ok",
    )
    .unwrap();
    let mut cfg = config(server.base_url());
    cfg.backoff = Duration::from_millis(100);
    let client = ChatClient::new(cfg).unwrap();
    let start = Instant::now();
    assert_eq!(client.chat(&question()).unwrap(), "ok");
    assert_eq!(server.request_count(), 3);
    // 100 ms, then 200 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "waited only {:?}",
        start.elapsed()
    );
}

#[test]
fn server_errors_exhaust_retries() {
    let server = MockChatServer::start(|_, _| Step::Status(500)).unwrap();
    let mut cfg = config(server.base_url());
    cfg.max_retries = 2;
    let client = ChatClient::new(cfg).unwrap();
    let err = client.chat(&question()).unwrap_err();
    assert_eq!(server.request_count(), 3, "first attempt + 2 retries");
    match &err {
        ApiError::Status {
            status,
            attempts,
            url,
            body,
        } => {
            assert_eq!(*status, 500);
            assert_eq!(*attempts, 3);
            assert!(url.ends_with("/v1/chat/completions"));
            assert!(body.contains("mock status 500"), "{body}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert!(err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 500") && msg.contains("127.0.0.1"),
        "{msg}"
    );
}

#[test]
fn zero_retries_means_one_attempt() {
    let server = MockChatServer::start(|_, _| Step::Status(502)).unwrap();
    let mut cfg = config(server.base_url());
    cfg.max_retries = 0;
    let client = ChatClient::new(cfg).unwrap();
    assert_eq!(client.chat(&question()).unwrap_err().status(), Some(502));
    assert_eq!(server.request_count(), 1);
}

#[test]
fn client_errors_are_not_retried() {
    for status in [400u16, 401, 404, 422] {
        let server = MockChatServer::start(move |_, _| Step::Status(status)).unwrap();
        let client = ChatClient::new(config(server.base_url())).unwrap();
        let err = client.chat(&question()).unwrap_err();
        assert_eq!(err.status(), Some(status), "{err}");
        assert!(!err.is_transient());
        assert_eq!(
            server.request_count(),
            1,
            "HTTP {status} must not be retried"
        );
    }
}

#[test]
fn timeout_is_retried_then_reported() {
    let server = MockChatServer::start(|_, _| Step::Hang(Duration::from_secs(3))).unwrap();
    let mut cfg = config(server.base_url());
    cfg.timeout = Duration::from_millis(300);
    cfg.max_retries = 1;
    let client = ChatClient::new(cfg).unwrap();
    let start = Instant::now();
    let err = client.chat(&question()).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, ApiError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 2, "one retry after the timeout");
    assert!(
        took < Duration::from_secs(3),
        "the client waited for the server: {took:?}"
    );
    assert!(
        err.to_string().contains("did not answer within 300ms"),
        "{err}"
    );
}

#[test]
fn timeout_then_success() {
    let server =
        MockChatServer::scripted(vec![Step::Hang(Duration::from_secs(2))], "late but fine")
            .unwrap();
    let mut cfg = config(server.base_url());
    cfg.timeout = Duration::from_millis(300);
    let client = ChatClient::new(cfg).unwrap();
    assert_eq!(client.chat(&question()).unwrap(), "late but fine");
    assert_eq!(server.request_count(), 2);
}

#[test]
fn malformed_json_is_a_clear_error_without_retry() {
    let server = MockChatServer::start(|_, _| Step::MalformedJson).unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    let err = client.chat(&question()).unwrap_err();
    assert!(matches!(err, ApiError::MalformedJson { .. }), "{err:?}");
    assert_eq!(server.request_count(), 1);
    let msg = err.to_string();
    assert!(
        msg.contains("not valid JSON") && msg.contains("/v1/chat/completions"),
        "{msg}"
    );
}

#[test]
fn missing_choices_is_a_clear_error_without_retry() {
    let server = MockChatServer::start(|_, _| Step::MissingField).unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    let err = client.chat(&question()).unwrap_err();
    match &err {
        ApiError::MalformedReply { field, .. } => assert_eq!(field, "choices"),
        other => panic!("expected MalformedReply, got {other:?}"),
    }
    assert_eq!(server.request_count(), 1);
    assert!(err.to_string().contains("`choices` is missing"), "{err}");
}

#[test]
fn content_of_wrong_type_names_the_field() {
    let server = MockChatServer::start(|_, _| {
        Step::Raw(MockResponse::json(
            200,
            &json!({"choices": [{"message": {"content": 42}}]}),
        ))
    })
    .unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    let err = client.chat(&question()).unwrap_err().to_string();
    assert!(
        err.contains("`choices[0].message.content` is a number"),
        "{err}"
    );
}

#[test]
fn connection_refused_is_retried_then_reported() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(format!("http://127.0.0.1:{port}/v1"));
    cfg.max_retries = 2;
    let client = ChatClient::new(cfg).unwrap();
    let err = client.chat(&question()).unwrap_err();
    assert!(
        matches!(err, ApiError::Transport { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn works_from_many_threads() {
    let server = MockChatServer::start(|req, _| Step::Reply(req.chat_texts().join("|"))).unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let client = &client;
            s.spawn(move || {
                let reply = client.chat(&[ChatMessage::user(format!("q{i}"))]).unwrap();
                assert_eq!(reply, format!("q{i}"));
            });
        }
    });
    assert_eq!(server.request_count(), 4);
}

#[test]
fn bad_configuration_and_input_fail_before_any_request() {
    assert!(matches!(
        ChatClient::new(config("127.0.0.1:1/v1".into())),
        Err(ApiError::Config(_))
    ));
    assert!(matches!(
        ChatClient::new(ApiConfig {
            model: " ".into(),
            ..config("http://x".into())
        }),
        Err(ApiError::Config(_))
    ));
    let server = MockChatServer::fixed("x").unwrap();
    let client = ChatClient::new(config(server.base_url())).unwrap();
    let not_png = vec![ChatMessage::user("look").with_png(b"JFIF....".to_vec())];
    let err = client.chat(&not_png).unwrap_err();
    assert!(matches!(err, ApiError::InvalidInput { .. }), "{err:?}");
    assert!(client.chat(&[]).is_err());
    assert_eq!(server.request_count(), 0);
}

#[test]
fn generic_mock_server_records_requests() {
    let server =
        MockServer::start(|req, n| MockResponse::new(200, format!("{n}:{}", req.path))).unwrap();
    let agent = std::net::TcpStream::connect(server.addr()).unwrap();
    drop(agent); // A connection without a request is not counted.
    let client = ChatClient::new(config(format!("{}/api", server.base_url()))).unwrap();
    // The body is not JSON: a clear error, and the path shows in the record.
    assert!(matches!(
        client.chat(&question()),
        Err(ApiError::MalformedJson { .. })
    ));
    assert_eq!(server.request_count(), 1);
    assert_eq!(server.requests()[0].path, "/api/chat/completions");
}
