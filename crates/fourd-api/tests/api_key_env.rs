//! The bearer key falls back to OPENAI_API_KEY (own test binary: it changes the environment).

use std::time::Duration;

use fourd_api::testing::MockChatServer;
use fourd_api::{ApiConfig, ChatClient, ChatMessage, API_KEY_ENV};

#[test]
fn key_from_config_then_environment_then_none() {
    let server = MockChatServer::fixed("ok").unwrap();
    let mut cfg = ApiConfig::new(server.base_url(), "m");
    cfg.timeout = Duration::from_secs(5);
    let msg = [ChatMessage::user("hi")];

    std::env::set_var(API_KEY_ENV, "sk-from-env");
    ChatClient::new(cfg.clone()).unwrap().chat(&msg).unwrap();
    assert_eq!(
        server.last_request().unwrap().header("authorization"),
        Some("Bearer sk-from-env")
    );

    let explicit = ApiConfig {
        api_key: Some("sk-explicit".into()),
        ..cfg.clone()
    };
    ChatClient::new(explicit).unwrap().chat(&msg).unwrap();
    assert_eq!(
        server.last_request().unwrap().header("authorization"),
        Some("Bearer sk-explicit")
    );

    std::env::remove_var(API_KEY_ENV);
    ChatClient::new(cfg.clone()).unwrap().chat(&msg).unwrap();
    assert_eq!(server.last_request().unwrap().header("authorization"), None);

    // The key never shows in Debug output.
    let shown = format!(
        "{:?}",
        ApiConfig {
            api_key: Some("sk-secret".into()),
            ..cfg
        }
    );
    assert!(
        !shown.contains("sk-secret") && shown.contains("redacted"),
        "{shown}"
    );
}
